"""A run over blocks of rows: checks, --from, prepare, the engine, the views, the gradient
statistics and --grad-out, then the Result (``BlockPipeline``); ``run_files`` runs it
locally over files, in the order the contract gives: count and open every source once
(positional inputs and --weight/--pos-weight files), refuse a --grad-out that would replace
any of them, read, validate on the CPU, compute, write the gradient atomically."""

from __future__ import annotations

import itertools
import math
import time
import warnings
from functools import partial
from typing import Any

import numpy as np

from losscli import assemble, plan
from losscli.assemble import input_summary, sample_rows
from losscli.errors import DeviceError, InputError, OptionError
from losscli.gate import gate_of
from losscli.io import InputArray
from losscli.io.common import worked_ahead
from losscli.options import Common
from losscli.output import NO_PROGRESS
from losscli.plan import (
    GROUP,
    group_slots,
    input_sources,
    open_all,
    parse_sources,
    run_context,
    vector_options,
)
from losscli.registry import (
    FLOAT,
    INDEX,
    LABEL,
    VECTOR,
    LossSpec,
)
from losscli.result import Result
from losscli.settings import check_options, check_settings
from losscli.signals import check_stopped
from losscli.validate import Context, check_representable


def run_local(
    spec: LossSpec,
    source_texts: list[str],
    options: dict[str, Any],
    settings: Common,
    *,
    stdin=0,
    env: dict[str, str] | None = None,
    progress=None,
    also_read: dict[tuple[int, int], str] | None = None,
    keep_gradients: bool = False,
    want_state: bool = False,
):
    """Read the sources block by block in this process, compute, write --grad-out; returns
    (Result, Gate or None). The arguments are ``api.run_files``'s; ``want_state`` keeps the
    state in the Result even without --emit-state (a --dask task's)."""
    from losscli import report, torch_loader, views
    from losscli.io import Blocks, SourceSet, check_output_path, refuse_same_file

    progress = progress or (lambda text: NO_PROGRESS)
    env = env or {}
    classes = check_settings(settings)
    asked = views.asked(settings, spec)
    defaults, parsed = parse_sources(source_texts, settings)
    texts = input_sources(spec, source_texts, settings)
    if settings.grad_out is not None and settings.no_grad:
        raise OptionError("--grad-out needs the gradient; drop --no-grad")
    args = [parsed[text] for text in texts]
    notes: list[str] = []  # what reading decided about option files (a header, an index)
    with SourceSet(stdin_fd=stdin) as sources:
        torch_loader.preload_torch()
        open_all(sources, args)
        options = vector_options(spec, options, sources, defaults, notes)
        grad_out = state_out = None
        read = {**(also_read or {}), **sources.identities}
        if settings.grad_out is not None:
            grad_out = check_output_path("--grad-out", settings.grad_out, read)
        if settings.emit_state is not None:
            if settings.reduction == "none":
                raise OptionError(
                    "--emit-state needs a reduced loss (--reduction mean, sum or batchmean): "
                    "the elements of reduction none are not a state"
                )
            state_out = check_output_path("--emit-state", settings.emit_state, read, (".json",))
        refuse_same_file({"--emit-state": state_out, "--grad-out": grad_out})
        report_out = report.output(
            settings.report, read, {"--grad-out": grad_out, "--emit-state": state_out}
        )
        ctx = run_context(settings, classes, notes)
        table = settings.format == "table"
        blocks = Blocks(settings.block_rows)
        slots = None
        if settings.group_by is not None:
            args, slots = group_slots(spec, texts, args, settings)
        try:
            with progress(f"{spec.name} on {settings.device}") as tracker:
                result = compute_blocks(
                    spec,
                    plan.read_inputs(spec, args, sources, settings, blocks, slots),
                    options,
                    ctx,
                    device=settings.device,
                    dtype=settings.dtype,
                    grad=not settings.no_grad,
                    keep_rows=settings.limit if settings.per_sample and table else 0,
                    steps_limit=settings.limit if settings.steps and table else 0,
                    grad_out=grad_out,
                    keep_gradients=keep_gradients,
                    tracker=tracker,
                    emit_state=state_out is not None or want_state,
                    convert_from=settings.from_,
                    asked=asked,
                    shown=settings.format != "value" or report_out is not None or keep_gradients,
                )
            if result.state is not None:
                from losscli import state

                state.record_rows(result.state, dict(zip(spec.input_names, args)))
            if state_out is not None:
                write_state(state_out, result)
            gate = gate_of(result, settings)
            report.write(report_out, result.to_dict(), spec.name)
        except DeviceError as error:
            if "device" in env:
                raise DeviceError(f"{env['device']}={settings.device}: {error.message}") from None
            raise
    return result, gate


def write_state(path, result: Result) -> None:
    """Write the run's mergeable state (--emit-state), atomically."""
    from losscli.io.write import write_text
    from losscli.state import dumps

    write_text(path, dumps(result.state))


def compute_inputs(
    spec: LossSpec,
    inputs: dict[str, InputArray],
    options: dict[str, Any],
    ctx: Context,
    **settings: Any,
) -> Result:
    """Validate whole ``inputs`` on the CPU, compute on the device, describe it in a Result
    (with the whole gradients)."""
    return compute_blocks(spec, iter([inputs]), options, ctx, keep_gradients=True, **settings)


def needs_whole(
    spec: LossSpec, first: dict[str, InputArray], options: dict[str, Any], convert_from=None
) -> bool:
    """Whether a loss needs its inputs whole rather than by blocks of rows: CTC (its inputs
    do not share rows), 1-D predictions with a weight vector (it may hold one weight per
    row), and 1-D logits that --from turns into log-probabilities (one distribution)."""
    if not spec.chunkable:
        return True
    if first[spec.inputs[0].name].array.ndim == 1:
        if convert_from == "logits" and spec.class_rows and spec.predictions_are == "log-probs":
            return True
        return any(
            isinstance(options.get(o.name), np.ndarray) and options[o.name].size > 1
            for o in spec.options
            if o.kind == VECTOR
        )
    return False


def compute_blocks(spec: LossSpec, blocks, options: dict[str, Any], ctx: Context, **settings):
    """Validate each block of rows on the CPU, compute it on the device, write the gradient
    of the first float input to ``grad_out`` block by block, and describe the run in a
    Result. ``blocks`` yields {input name: InputArray}; warnings about the whole input are
    said once every block has been seen. ``settings`` are BlockPipeline's."""
    from losscli.stream import whole

    options = check_options(spec, options, ctx.reduction)
    first = next(blocks)
    if needs_whole(spec, first, options, settings.get("convert_from")):
        first, blocks = whole(first, blocks), iter(())
    run = BlockPipeline(spec, first, options, ctx, **settings)
    try:
        # The next block's extremes (what the value checks read) are found on a thread
        # while this block computes: NumPy's reductions release the GIL.
        items = ((block,) for block in itertools.chain([first], blocks))
        for block, _ in worked_ahead(items, _find_extremes):
            run.add(block)
        return run.finish()
    finally:
        run.close()


def _find_extremes(block: dict[str, InputArray]) -> None:
    for item in block.values():
        item.extremes()


class BlockPipeline:
    """One loss run over blocks of rows given one by one (``add``), ``first`` being the
    first: checks, --from, prepare, the engine, the gradient statistics and --grad-out, the
    head kept for --steps, --check; ``finish`` gives the Result."""

    def __init__(
        self,
        spec: LossSpec,
        first: dict[str, InputArray],
        options: dict[str, Any],
        ctx: Context,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        grad: bool = True,
        keep_rows: int = 0,
        steps_limit: int = 0,
        grad_out=None,
        keep_gradients: bool = False,
        tracker=NO_PROGRESS,
        emit_state: bool = False,
        convert_from: str | None = None,
        asked: dict[str, Any] | None = None,
        shown: bool = True,
    ):
        from losscli import convert
        from losscli.io import check_output_shape

        self.started = time.perf_counter()
        self.spec, self.first, self.options, self.ctx = spec, first, options, ctx
        self.device, self.dtype, self.grad = device, dtype, grad
        self.keep_rows, self.steps_limit, self.grad_out = keep_rows, steps_limit, grad_out
        self.keep_gradients, self.tracker, self.emit_state = keep_gradients, tracker, emit_state
        self.asked = asked or {}  # each view's option value (losscli.views)
        # What the run computes beyond its value and --grad-out: the gradient summaries and
        # the views that are always on, where it shows them (not -f value) or keeps a state.
        self.shown, self.summarize = shown, shown or emit_state
        self.given_as, self.conversion = convert.check(spec, convert_from)
        ctx.converted = self.conversion is not None
        self.first_float = spec.float_inputs[0]
        if grad_out is not None:
            check_output_shape("--grad-out", grad_out, first[self.first_float].array.shape)
        tracker.start(first[spec.inputs[0].name].rows)
        self.names = names = spec.input_names
        self.rows = dict.fromkeys(names, 0)
        self.stats: dict[str, Any] = {}
        self.kept: dict[str, list[np.ndarray]] = {}
        self.head: dict[str, list[np.ndarray]] = {}
        self.head_rows = 0
        self.block_run = self.writer = self.first_prepared = None
        self.expected = None
        self.parts: dict[str, Any] = {}  # the views' accumulators
        self.last_block = None  # the last block as the views saw it (compare pairs them)
        self.base_row = first[names[0]].row_offset  # a part of a larger input (--dask)

    def add(self, block: dict[str, InputArray]) -> None:
        """Check, prepare and compute one block of rows."""
        check_stopped()
        from losscli import convert, engine
        from losscli.io.write import BlockWriter

        spec, ctx, names = self.spec, self.ctx, self.names
        groups = None
        if GROUP in block:
            block = dict(block)
            groups = block.pop(GROUP).array
        for input_spec in spec.inputs:
            inp = block[input_spec.name]
            for message in inp.info.get("notes", []):
                ctx.warn(message)
            if inp.array.size == 0:
                raise InputError(
                    f"{input_spec.name} ({inp.source}): has no data (shape {inp.shape})"
                )
            if input_spec.role in (FLOAT, LABEL):  # computed in --dtype
                check_representable(input_spec.name, inp, ctx)
        raw = None
        if self.given_as is not None:
            inp = block[names[0]]
            convert.check_values(self.given_as, inp.source, inp.array)
            convert.row_sums(spec, self.given_as, inp, ctx)
        if self.conversion is not None:
            raw = inp.array
            converted = convert.array(spec, self.conversion, raw, self.dtype)
            block = {**block, names[0]: inp.with_array(converted)}
        prepared = spec.prepare(block, self.options, ctx)
        if self.block_run is None:
            self._start(block, prepared)
        block_run = self.block_run
        with warnings.catch_warnings():
            # torch's own warnings (KLDivLoss's reduction advice, ...) are said by losscli
            # where they matter; none reaches stderr.
            warnings.simplefilter("ignore")
            # The gradients of the sum times the factor the run expects (a fused kernel scales
            # as it computes); the first block, which foretells the factor, is scaled after.
            gradients = block_run.add(prepared, raw, self.expected or 1.0)
        if self.expected is None:
            self.expected = _expected_factor(block_run, block[names[0]])
            if self.expected != 1.0:
                for gradient in gradients.values():
                    np.multiply(gradient, gradient.dtype.type(self.expected), out=gradient)
        self._add_views(prepared, raw, gradients, groups)
        for name, gradient in gradients.items():
            # In the shape the input was read in ((T,C) CTC log_probs, (N,1) targets).
            shape = block[name].array.shape
            if gradient.shape != shape and gradient.size == math.prod(shape):
                gradient = gradient.reshape(shape)
            if self.summarize:
                stats = self.stats.setdefault(name, engine.GradientStats([], self.expected))
                stats.add(gradient)
            if name == self.first_float and self.grad_out is not None:
                if self.writer is None:
                    trailing = gradient.shape[1:] if gradient.ndim else None
                    self.writer = BlockWriter(
                        self.grad_out, trailing, gradient.dtype, block[name].header,
                        applied=self.expected,
                    )  # fmt: skip
                    _leave_a_core(self.block_run)
                self.writer.add(gradient)
            if self.keep_gradients:
                self.kept.setdefault(name, []).append(gradient)
        if self.steps_limit and self.head_rows < self.steps_limit:
            self.head_rows = _keep_head(
                self.head, prepared.arrays, self.head_rows, self.steps_limit
            )
        for name in names:
            array = block[name].array
            self.rows[name] += len(array) if array.ndim else 0
        first_array = block[names[0]].array
        self.tracker.advance(len(first_array) if first_array.ndim else 1)

    def _start(self, block, prepared) -> None:
        """Set up the engine and the views' accumulators once the first block is prepared."""
        from losscli import engine, views

        spec = self.spec
        self.first_prepared = prepared
        engine.resolve_device(self.device)  # refused before any computation
        first = block[spec.inputs[0].name]
        targets = block[spec.inputs[1].name].source if len(spec.inputs) > 1 else None
        setup = views.Setup(
            spec=spec, asked=None, options=prepared.options, reduction=self.ctx.reduction,
            dtype=self.dtype, grad=self.grad, convert_from=self.conversion,
            emit_state=self.emit_state, classes=_class_count(spec, block, prepared),
            targets_kind=prepared.targets_kind, targets_source=targets,
            source=first.info.get("label", first.source), shown=self.shown,
        )  # fmt: skip
        self.parts = views.start(setup, self.asked)
        # Every gradient where the run shows their summaries or a view reads them; else only
        # the one --grad-out writes (-f value shows none).
        keeps = [v for v in views.all_views() if v.key in self.parts]
        every = self.summarize or any(v.needs_gradients for v in keeps)
        only = [self.first_float] if self.grad_out is not None else []
        self.block_run = engine.BlockRun(
            spec, reduction=self.ctx.reduction, device=self.device, dtype=self.dtype,
            grad=self.grad, grad_inputs=None if every else only, keep_rows=self.keep_rows,
            convert_from=self.conversion, keep_elements=bool(self.parts) or self.emit_state,
        )  # fmt: skip

    def _add_views(self, prepared, raw, gradients, groups) -> None:
        """Give the block just computed to every view the run keeps."""
        from losscli import views
        from losscli.engine import sample_mask

        if not self.parts:
            return
        block_run, spec = self.block_run, self.spec
        parts = block_run.last_elements
        elements = parts[0] if len(parts) == 1 else np.concatenate(parts)
        chunk = {n: prepared.arrays[n] for n in spec.input_names}
        block = views.Block(
            spec=spec, prepared=prepared, raw=raw, elements=elements,
            shape=block_run.last_shape, row_losses=block_run.last_row_losses(),
            element_mask=sample_mask(elements.size, chunk, prepared.options),
            row_mask=sample_mask(sum(block_run.last_rows), chunk, prepared.options),
            first_row=self.base_row + self.rows[self.names[0]], groups=groups,
            gradients=gradients, gradient_scale=self.expected,
        )  # fmt: skip
        views.add(self.parts, block)
        self.last_block = block

    def close(self) -> None:
        """Remove what an unfinished --grad-out left (nothing once finished)."""
        if self.writer is not None:
            self.writer.close()

    def finish(self) -> Result:
        """Say the whole-input warnings, finish --grad-out, and describe the run."""
        check_stopped()
        spec, ctx, names, first, rows = self.spec, self.ctx, self.names, self.first, self.rows
        block_run, first_prepared, grad = self.block_run, self.first_prepared, self.grad
        ctx.finish()
        factor = block_run.factor
        # What the gradients computed (in units of the expected factor) are still to be
        # multiplied by: 1.0 where the first block foretold the factor.
        expected = self.expected or 1.0
        rest = 1.0 if factor == expected else factor / expected
        if self.writer is not None:
            self.writer.commit(factor)
        shapes = {
            n: [rows[n], *first[n].array.shape[1:]] if first[n].array.ndim else [] for n in names
        }
        gradients = None
        if grad:
            gradients = {}
            for name, parts in self.kept.items():
                gradient = parts[0] if len(parts) == 1 else np.concatenate(parts)
                if rest != 1.0:
                    np.multiply(gradient, rest, out=gradient)
                gradients[name] = gradient
        summary = None
        if grad and self.summarize:
            summary = {}
            for name, gradient_stats in self.stats.items():
                gradient_stats.shape = shapes[name]
                written = None  # the min and max are the values the file holds
                if self.writer is not None and name == self.first_float:
                    written = partial(self.writer.as_written, factor=factor)
                summary[name] = gradient_stats.summary(rest, written)
        steps = None
        if self.steps_limit:
            joined = {
                n: parts[0] if len(parts) == 1 else np.concatenate(parts)
                for n, parts in self.head.items()
            }
            steps = spec.steps_table(joined, first_prepared.options, self.steps_limit)
        output = block_run.output(gradients if self.keep_gradients else None)
        total_s = time.perf_counter() - self.started
        batch_rows = (
            rows[names[0]]
            if spec.chunkable
            else sample_rows(first_prepared.arrays[spec.inputs[0].name], spec)
        )
        if first[names[0]].array.ndim == 0:
            batch_rows = 1
        kind = first_prepared.targets_kind
        result = Result(
            loss=spec.name,
            torch_class=spec.torch_class,
            value=output.value,
            reduction=ctx.reduction,
            options=first_prepared.options,
            device=output.device,
            dtype=self.dtype,
            inputs={
                i.name: input_summary(first[i.name], kind, i, shapes[i.name]) for i in spec.inputs
            },
            gradients=output.gradients,
            gradient_summary=summary,
            warnings=ctx.warnings,
            timing={"read_s": max(total_s - output.compute_s, 0.0), "compute_s": output.compute_s},
            targets_kind=kind,
            total=output.total,
            denominator=output.denominator,
            per_sample=output.elements if self.keep_rows else None,
            per_sample_total=batch_rows,
            steps=steps,
        )
        from losscli import views

        # The warnings of the core; the views' own are said again from merged states.
        warnings = list(ctx.warnings)
        class_names = assemble.class_names(result, ctx, first, spec)
        finish = views.Finish(
            spec=spec, asked=None, reduction=ctx.reduction, options=first_prepared.options,
            value=result.value, total=result.total, dtype=self.dtype, device=result.device,
            class_names=class_names, warnings=result.warnings,
        )  # fmt: skip
        result.views = views.results(self.parts, finish, self.asked)
        if self.emit_state:
            from losscli import state

            sources = {n: [first[n].info.get("label", first[n].source)] for n in names}
            result.state = state.build(
                result, block_run, self.stats, sources, self.parts, warnings, class_names
            )
        return result


def _class_count(spec: LossSpec, block: dict[str, InputArray], prepared) -> int | None:
    """The number of classes where the targets are class indices (per-class state)."""
    index_inputs = [i.name for i in spec.inputs if i.role == INDEX]
    if not index_inputs or "targets" not in prepared.arrays:
        return None
    targets = prepared.arrays["targets"]
    predictions = block[spec.inputs[0].name].array
    if targets.dtype != np.int64 or predictions.ndim < 2:
        return None
    return int(predictions.shape[1])


def _leave_a_core(block_run) -> None:
    """A run on the CPU that writes its gradient leaves one core to the threads that write
    it and read ahead: torch's threads wait for the slowest of them at every operation, so
    one that shares its core with a writer slows all (measured on 2 cores: 5-20% faster
    with torch on 1). OMP_NUM_THREADS, where set, decides instead."""
    import os

    if block_run.device.type != "cpu" or "OMP_NUM_THREADS" in os.environ:
        return
    torch = block_run.torch
    _THREADS.setdefault("torch", torch.get_num_threads())  # the same for every run of a batch
    torch.set_num_threads(max(1, _THREADS["torch"] - 1))


_THREADS: dict[str, int] = {}


def _expected_factor(block_run, first: InputArray) -> float:
    """The factor the gradient of a sum will be multiplied by, as the first block foretells
    it where the row count is known (a mean over elements: exactly), so that --grad-out is
    written scaled as it goes; 1.0 where it cannot be foretold (scaled once the run ends)."""
    if not block_run.mean:
        return 1.0
    rows = first.rows
    if rows is None or not first.array.ndim or not block_run.denominator:
        return 1.0
    if len(first.array) == rows:  # the whole input in one block
        return block_run.factor
    return 1.0 / (block_run.denominator / len(first.array) * rows)


def _keep_head(head: dict[str, list], arrays: dict[str, np.ndarray], kept: int, limit: int) -> int:
    """Keep the first rows of each prepared array, up to ``limit`` rows in all (for --steps)."""
    count = 0
    for name, array in arrays.items():
        if array.ndim == 0:
            head.setdefault(name, [array])
            continue
        part = array[: limit - kept]
        head.setdefault(name, []).append(part)
        count = max(count, len(part))
    return kept + count
