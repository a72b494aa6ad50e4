"""Files or arrays in, Result out: the one path from inputs to a Result and an exit code.

``run_files`` serves the CLI and ``losscli.compute_files``; ``compute_inputs`` (inputs as
read -> checks -> engine -> Result) serves it and ``losscli.compute`` on arrays.

The order of ``run_files`` is the contract: count and open every source once (positional
inputs and --weight/--pos-weight files); refuse a --grad-out that would replace any of them;
read; validate on the CPU; compute; write the gradient atomically; evaluate the gate.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
import warnings
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import numpy as np

from losscli.entry import check_stopped
from losscli.errors import EXIT_GATE, DeviceError, InputError, OptionError
from losscli.io import InputArray
from losscli.options import Common
from losscli.registry import (
    FLAG,
    FLOAT,
    INDEX,
    INTEGER,
    LABEL,
    LENGTH,
    NUMBER,
    VECTOR,
    LossSpec,
    OptionSpec,
    get_spec,
)
from losscli.result import Result
from losscli.validate import Context, check_representable

READ_AS = {FLOAT: "values", LABEL: "labels", LENGTH: "lengths", INDEX: "class indices"}


@dataclass
class Gate:
    """What --fail-above / --fail-below decided, for stderr and JSON."""

    fail_above: float | None
    fail_below: float | None
    tripped: bool
    reason: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_settings(settings: Common) -> list[str] | None:
    """Refuse common option values outside their domain; returns the --classes names."""
    for flag, value in (
        ("--fail-above", settings.fail_above),
        ("--fail-below", settings.fail_below),
    ):
        if value is not None and not math.isfinite(value):
            raise OptionError(f"{flag} {value} is not a finite number")
    if settings.classes is None:
        return None
    classes = [c.strip() for c in settings.classes.split(",")]
    if not all(classes):
        raise OptionError(f"--classes {settings.classes!r} has an empty name")
    repeated = sorted({c for c in classes if classes.count(c) > 1})
    if repeated:
        raise OptionError(
            f"--classes names {', '.join(map(repr, repeated))} more than once; "
            "each class needs one name"
        )
    return classes


def input_sources(spec: LossSpec, sources: list[str], settings: Common) -> list[str]:
    """One source per input; in single-file mode the first file gives predictions and targets."""
    count = len(spec.inputs)
    single_file = settings.pred_cols is not None and settings.target_cols is not None
    if single_file and len(sources) == count - 1:
        sources = [sources[0], *sources]
    if len(sources) != count:
        names = " ".join(i.name.upper() for i in spec.inputs)
        hint = " (or one table file fewer with --pred-cols and --target-cols)" if count > 1 else ""
        raise OptionError(f"{spec.name} takes {count} input(s): {names}{hint}; got {len(sources)}")
    return sources


def _requests(spec: LossSpec, settings: Common):
    import numpy as np

    from losscli.io import Request, parse_columns

    float_dtype = np.float64 if settings.dtype == "float64" else np.float32
    requests = []
    for position, input_spec in enumerate(spec.inputs):
        columns = None
        if position == 0:
            columns = parse_columns(settings.pred_cols)
        elif position == 1:
            columns = parse_columns(settings.target_cols)
        names = input_spec.role == INDEX
        dtype = float_dtype if input_spec.differentiable and not settings.check else np.float64
        requests.append(Request(columns, names, dtype))
    return requests


def read_inputs(spec: LossSpec, args: list, sources, settings: Common, blocks=None, slots=None):
    """Every input as blocks of rows in lockstep ({input name: InputArray} per block);
    inputs that name one argument (single-file mode) share one read. ``blocks`` None reads
    each input whole (in as few blocks as its reader makes). ``slots``: (name, input
    position) of each argument, where they are not the loss's inputs in order (compare)."""
    from losscli.io import open_blocks
    from losscli.io.shards import shard_args, shard_blocks
    from losscli.stream import lockstep

    requests = _requests(spec, settings)
    positions_of: dict[int, list[int]] = {}
    for position, arg in enumerate(args):
        positions_of.setdefault(id(arg), []).append(position)
    groups = []
    for positions in positions_of.values():
        arg = args[positions[0]]
        slot = [slots[p] if slots else (spec.inputs[p].name, p) for p in positions]
        wanted = [requests[index] if isinstance(index, int) else index for _, index in slot]
        names = [name for name, _ in slot]
        shards = shard_args(arg)
        if shards is None:
            source = sources.open(arg)
            read = open_blocks(source, wanted, blocks)
            label = source.label
        else:
            read, label = shard_blocks(arg, shards, sources, wanted, blocks), arg.path
        groups.append((names, label, read))
    if not spec.chunkable:  # CTC: rows of its inputs do not line up; each is read whole
        from losscli.io import join_blocks

        return iter(
            [{n: a for names, _, read in groups for n, a in zip(names, join_blocks(list(read)))}]
        )
    return lockstep(groups)


def _gate(values: list[float], settings: Common) -> Gate | None:
    above, below = settings.fail_above, settings.fail_below
    if above is None and below is None:
        return None
    reasons = []
    for bound, word, crossed in (
        (above, "above", lambda v, b: v > b),
        (below, "below", lambda v, b: v < b),
    ):
        if bound is None:
            continue
        bad = [v for v in values if math.isnan(v) or crossed(v, bound)]
        if not bad:
            continue
        if len(values) == 1 and math.isnan(bad[0]):
            reasons.append(f"loss is NaN (trips --fail-{word} {bound!r})")
        elif len(values) == 1:
            reasons.append(f"loss {bad[0]!r} is {word} {bound!r}")
        else:
            reasons.append(f"{len(bad)} of {len(values)} losses are {word} {bound!r} or NaN")
    return Gate(above, below, bool(reasons), "; ".join(reasons) or None)


def run_files(
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
    """Read the sources block by block, compute, write --grad-out; returns (Result, Gate or
    None). ``progress(text)`` is a context manager giving an object with ``start(total)`` and
    ``advance(rows)``. ``also_read``: identities of other files the run reads (a batch's jobs
    file), which --grad-out must not replace either. ``keep_gradients`` keeps the whole
    gradients in the Result (the Python API), which memory then holds."""
    from losscli import engine, views
    from losscli.io import (
        Blocks,
        SourceSet,
        check_output_path,
    )

    progress = progress or (lambda text: NO_PROGRESS)
    env = env or {}
    classes = check_settings(settings)
    asked = views.asked(settings, spec)
    if settings.dask is not None:
        from losscli import cluster

        cluster.check_address(settings.dask, env.get("dask"))
        state_out = None
        if settings.emit_state is not None:  # checked before any task runs
            state_out = check_output_path("--emit-state", settings.emit_state, {}, (".json",))
        result, gate = cluster.run(spec, source_texts, options, settings, progress)
        if state_out is not None:
            _write_state(state_out, result)
        return result, gate
    defaults, parsed = _parse_sources(source_texts, settings)
    texts = input_sources(spec, source_texts, settings)
    if settings.grad_out is not None and settings.no_grad:
        raise OptionError("--grad-out needs the gradient; drop --no-grad")
    args = [parsed[text] for text in texts]
    notes: list[str] = []  # what reading decided about option files (a header, an index)
    with SourceSet(stdin_fd=stdin) as sources:
        engine.preload_torch()
        _open_all(sources, args)
        options = _vector_options(spec, options, sources, defaults, notes)
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
            if grad_out is not None and state_out.resolve() == grad_out.resolve():
                raise OptionError("--emit-state and --grad-out name the same file")
        ctx = _context(settings, classes, notes)
        table = settings.format == "table"
        blocks = Blocks(settings.block_rows)
        slots = None
        if settings.group_by is not None:
            args, slots = _group_slots(spec, texts, args, settings)
        try:
            with progress(f"{spec.name} on {settings.device}") as tracker:
                result = compute_blocks(
                    spec,
                    read_inputs(spec, args, sources, settings, blocks, slots),
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
                )
            if result.state is not None:
                from losscli import state

                state.record_rows(result.state, dict(zip(spec.input_names, args)))
            if state_out is not None:
                _write_state(state_out, result)
        except DeviceError as error:
            if "device" in env:
                raise DeviceError(f"{env['device']}={settings.device}: {error.message}") from None
            raise
    return result, gate_of(result, settings)


# The name of the --group-by column among the inputs read in lockstep.
GROUP = "--group-by"


def _group_slots(spec: LossSpec, texts: list[str], args: list, settings: Common):
    """The arguments and slots that read the --group-by column beside the inputs, from
    the one table of single-file mode."""
    from losscli.io import Request, parse_columns

    single = settings.pred_cols is not None and settings.target_cols is not None
    if not single or len(set(texts)) != 1:
        raise OptionError(
            "--group-by COL reads a column of the table that holds the predictions and the "
            "targets: give one file with --pred-cols and --target-cols"
        )
    columns = parse_columns(settings.group_by)
    kind, sep, _ = columns[0].partition(":") if columns else ("", "", "")
    if columns is None or len(columns) != 1 or (sep and kind not in ("name", "index")):
        raise OptionError(f"--group-by {settings.group_by!r} is not one column")
    slots = [(i.name, p) for p, i in enumerate(spec.inputs)]
    slots.append((GROUP, Request(columns, True, np.float64)))
    return [*args, args[0]], slots


def _parse_sources(source_texts: list[str], settings: Common):
    """The reading defaults of the common options, and each argument parsed (an argument
    named twice, as single-file mode does, is one source, read once); stdin named twice is
    refused."""
    from losscli.io import parse_source

    defaults = reading_defaults(settings)
    parsed = {text: parse_source(text, defaults) for text in source_texts}
    if sum(parsed[text].path == "-" for text in source_texts) > 1:  # '-', '-?header=no'...
        raise OptionError(
            "only one input can come from stdin ('-'); write the others to files first"
        )
    return defaults, parsed


def reading_defaults(settings: Common):
    """The reading options that --input-format, --delimiter and --header give every input."""
    from losscli.io import ReadOptions
    from losscli.io.sources import delimiter_option, format_option

    return ReadOptions(
        format_option(settings.input_format), delimiter_option(settings.delimiter), settings.header
    )


def _open_all(sources, args) -> None:
    """Open every argument (each shard of a folder or pattern) once, before any is read."""
    from losscli.io.shards import shard_args

    for arg in args:
        for shard in shard_args(arg) or [arg]:
            sources.open(shard)


def _context(settings: Common, classes, notes: list[str]) -> Context:
    """What validation needs of the settings, with the notes reading made as warnings."""
    ctx = Context(
        reduction=settings.reduction,
        allow_nonfinite=settings.allow_nonfinite,
        classes=classes,
        dtype=settings.dtype,
    )
    for message in notes:
        ctx.warn(message)
    return ctx


def _vector_options(spec: LossSpec, options: dict, sources, defaults, notes: list) -> dict:
    """The loss options with vectors given as files read (they are sources too)."""
    from losscli.io import read_vector

    options = dict(options)
    for option in spec.options:
        if option.kind == VECTOR and options.get(option.name) is not None:
            value = options[option.name]
            options[option.name] = read_vector(option.flag, value, sources, defaults, notes)
    return options


def _same_shape(a, b) -> None:
    """Refuse predictions A and B of different shapes (a model with another class count):
    each side alone may suit the targets, but their losses would not measure the same task.
    Blocks read in lockstep have the same rows, so a block's other axes are compared (rows
    that differ are refused by the lockstep read, with both counts)."""
    if a.array.shape == b.array.shape:
        return
    raise InputError(
        f"A ({a.source}) has shape {a.shape} and B ({b.source}) has shape {b.shape}: "
        "compare needs two prediction sets of the same shape"
    )


def run_compare(
    spec: LossSpec,
    source_texts: list[str],
    options: dict[str, Any],
    settings: Common,
    margin: float | None,
    *,
    stdin=0,
    progress=None,
):
    """The loss of predictions A and of predictions B on the same targets, read once in
    lockstep, and the paired difference b - a of their unreduced losses (its standard error
    and 95% interval); returns (Comparison, Gate or None) for --fail-if-worse MARGIN."""
    from losscli import engine, views
    from losscli.io import Blocks, SourceSet
    from losscli.stream import whole

    progress = progress or (lambda text: NO_PROGRESS)
    classes = check_settings(settings)
    asked = views.asked(settings, spec)
    if margin is not None and not math.isfinite(margin):
        raise OptionError(f"--fail-if-worse {margin} is not a finite number")
    if settings.reduction == "none":
        raise OptionError("compare needs a reduced loss (--reduction mean, sum or batchmean)")
    count = len(spec.inputs)
    if len(source_texts) != count + 1:
        rest = " ".join(i.name.upper() for i in spec.inputs[1:])
        raise OptionError(
            f"compare {spec.name} takes {count + 1} inputs: A B {rest} (two prediction files, "
            f"then what they share); got {len(source_texts)}"
        )
    defaults, parsed = _parse_sources(source_texts, settings)
    args = [parsed[text] for text in source_texts]
    first = spec.inputs[0].name
    b_name = f"{first} (b)"
    slots = [(first, 0), (b_name, 0), *((i.name, p) for p, i in enumerate(spec.inputs) if p)]
    notes: list[str] = []
    with SourceSet(stdin_fd=stdin) as sources:
        engine.preload_torch()
        _open_all(sources, args)
        options = check_options(
            spec, _vector_options(spec, options, sources, defaults, notes), settings.reduction
        )
        contexts = [_context(settings, classes, notes), _context(settings, classes, [])]
        blocks = read_inputs(spec, args, sources, settings, Blocks(settings.block_rows), slots)
        joined = next(blocks)
        if _needs_whole(spec, joined, options, settings.from_):
            joined, blocks = whole(joined, blocks), iter(())
        _same_shape(joined[first], joined[b_name])
        headers = [joined[first].header, joined[b_name].header]
        if None not in headers and headers[0] != headers[1]:
            raise InputError(
                f"A ({joined[first].source}) and B ({joined[b_name].source}) name their columns "
                f"differently ({', '.join(headers[0])} / {', '.join(headers[1])}): compare needs "
                "the same classes in the same order"
            )

        def sides(block):
            a = {n: block[n] for n in spec.input_names}
            return a, {**a, first: block[b_name]}

        runs = [
            BlockPipeline(
                spec,
                side,
                options,
                ctx,
                device=settings.device,
                dtype=settings.dtype,
                grad=False,
                convert_from=settings.from_,
                asked=asked,
            )  # fmt: skip
            for side, ctx in zip(sides(joined), contexts)
        ]
        paired = views.Moments()  # of b - a, sample by sample
        with progress(f"compare {spec.name} on {settings.device}") as tracker:
            tracker.start(joined[first].rows)
            for block in itertools.chain([joined], blocks):
                _same_shape(block[first], block[b_name])
                for run, side in zip(runs, sides(block)):
                    run.add(side)
                a, b = (run.last_block.samples for run in runs)
                paired.add(b - a)
                rows = block[first].array
                tracker.advance(len(rows) if rows.ndim else 1)
        results = [run.finish() for run in runs]
    a, b = results
    uncertainty = views.standard_error(
        paired, settings.reduction, a.options, spec.mean_scale is not None
    )
    # Where the difference is a plain mean, the mean of the paired differences: exact where
    # b - a of two large values would cancel.
    difference = paired.mean if "stderr" in uncertainty else b.value - a.value
    comparison = views.Comparison(a, b, difference, uncertainty)
    for view in views.all_views():
        if view.name in a.views and view.name in b.views:
            compared = view.compare(a.views[view.name], b.views[view.name])
            if compared is not None:
                comparison.views[view.name] = compared
    gate = None
    if margin is not None:
        worse = comparison.value
        tripped = not worse <= margin  # NaN trips
        reason = None
        if tripped:
            reason = (
                f"b is worse than a by {worse!r} (more than --fail-if-worse {margin!r})"
                if worse == worse
                else f"the difference is NaN (trips --fail-if-worse {margin!r})"
            )
        gate = Gate(None, None, tripped, reason)
        comparison.gate = {"fail_if_worse": margin, "tripped": tripped, "reason": reason}
    return comparison, gate


def gate_of(result: Result, settings: Common) -> Gate | None:
    """What --fail-above / --fail-below decide about ``result`` (also set on it, for JSON)."""
    gate = _gate(result.values(), settings)
    result.gate = gate.to_dict() if gate else None
    return gate


def _write_state(path, result: Result) -> None:
    """Write the run's mergeable state (--emit-state), atomically."""
    from losscli.io.write import write_text
    from losscli.state import dumps

    write_text(path, dumps(result.state))


def exit_code(gate: Gate | None) -> int:
    return EXIT_GATE if gate is not None and gate.tripped else 0


def compute_files(loss: str, *sources: str, stdin=None, **settings_and_options: Any):
    """Compute ``loss`` from files, as the command line does: ``compute_files("ce",
    "logits.csv", "labels.csv", reduction="sum", weight="1,2,1")``. Common options go by
    their long names (``dtype``, ``pred_cols``, ``grad_out``...), loss options by their torch
    names; ``stdin`` is a binary file that a source ``-`` reads. Returns the Result (its
    ``gate`` says whether a gate tripped)."""
    import os

    spec = get_spec(loss)
    settings, options, _ = split_settings(spec, settings_and_options)
    texts = [os.fspath(source) for source in sources]
    result, _ = run_files(spec, texts, options, settings, stdin=stdin, keep_gradients=True)
    return result


def split_settings(
    spec: LossSpec,
    values: dict[str, Any],
    environment: dict[str, str] | None = None,
    ignored: frozenset[str] = frozenset(),
) -> tuple[Common, dict[str, Any], dict[str, str]]:
    """Common settings and loss options from ``{long name: value}``, as the Python API and
    batch jobs give them: dashes or underscores, a leading ``--`` or not, ``no-NAME: true``
    for an off switch, lists for column and class names, numbers as numbers or text.
    ``environment`` supplies LOSSCLI_DEVICE as the command line does; names in ``ignored``
    are dropped (a batch's output options). Returns the settings,
    the loss options and ``{option: variable}`` for options taken from the environment."""
    import typing

    from losscli.options import _common_hints

    fields = {f.name for f in dataclasses.fields(Common)}
    own = {option.name for option in spec.options}
    named: dict[str, Any] = {}
    for key, value in values.items():
        name = str(key).lstrip("-").replace("-", "_")
        if name == "from":  # --from: a Python keyword, the field from_
            name = "from_"
        if name not in fields | own and name.startswith("no_") and isinstance(value, bool):
            name, value = name[3:], not value
        if name not in ignored:
            named[name] = value
    unknown = sorted(set(named) - fields - own)
    if unknown:
        raise OptionError(
            f"{spec.name} has no option {', '.join(unknown)}; its options: "
            f"{', '.join(sorted(own)) or 'none'}; common options: {', '.join(sorted(fields))}"
        )
    common = {}
    for name in sorted(set(named) & fields):
        common[name] = _common_value(name, named[name], _common_hints()[name], typing)
    from_environment = {}
    device = (environment or {}).get("LOSSCLI_DEVICE")
    if "device" not in common and device:
        common["device"], from_environment["device"] = device, "LOSSCLI_DEVICE"
    options = {name: named[name] for name in named if name in own}
    return Common(**common), options, from_environment


def _common_value(name: str, value: Any, hint, typing) -> Any:
    """A common option's value in its declared type (the checks Typer makes on the CLI)."""
    flag = f"--{name.replace('_', '-')}"
    if name in ("pred_cols", "target_cols", "classes", "group_by") and isinstance(
        value, (list, tuple)
    ):
        value = ",".join(map(str, value))
    columns = ("pred_cols", "target_cols", "group_by")
    if name in columns and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # a column index
    kinds = [k for k in typing.get_args(typing.get_args(hint)[0]) or [typing.get_args(hint)[0]]]
    allowed = [
        a for k in kinds if typing.get_origin(k) is typing.Literal for a in typing.get_args(k)
    ]
    if value is None and type(None) in kinds:
        return None
    if allowed:
        if name != "reduction" and value not in allowed:  # reductions: checked per loss
            raise OptionError(f"{flag} {value!r} is not one of {', '.join(allowed)}")
        return value
    # Flags and numbers convert as loss options do (integers are >= 1, or in the domain of
    # the view whose option they are).
    if bool in kinds:
        return OptionSpec(name, None, FLAG, "").convert(value)
    if int in kinds:
        from losscli import views

        domain = {o.field: (o.low, o.high) for o in views.options()}.get(name, (1, None))
        return OptionSpec(name, None, INTEGER, "", low=domain[0], high=domain[1]).convert(value)
    if float in kinds:
        return OptionSpec(name, None, NUMBER, "").convert(value)
    if not isinstance(value, str):
        raise OptionError(f"{flag} {value!r} is not text")
    return value


def check_options(spec: LossSpec, options: dict[str, Any], reduction: str) -> dict[str, Any]:
    """The loss's options converted and checked from their declarations, defaults filled in."""
    if reduction not in spec.reductions:
        raise OptionError(
            f"--reduction {reduction!r} is not one of {', '.join(spec.reductions)} for {spec.name}"
        )
    return spec.convert_options(options)


class _NoProgress:
    """The progress of a run nobody watches."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def start(self, total: int | None) -> None:
        return None

    def advance(self, rows: int) -> None:
        return None


NO_PROGRESS = _NoProgress()


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


def _needs_whole(
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
    if _needs_whole(spec, first, options, settings.get("convert_from")):
        first, blocks = whole(first, blocks), iter(())
    run = BlockPipeline(spec, first, options, ctx, **settings)
    try:
        for block in itertools.chain([first], blocks):
            run.add(block)
        return run.finish()
    finally:
        run.close()


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
    ):
        from losscli import convert
        from losscli.io import check_output_shape

        self.started = time.perf_counter()
        self.spec, self.first, self.options, self.ctx = spec, first, options, ctx
        self.device, self.dtype, self.grad = device, dtype, grad
        self.keep_rows, self.steps_limit, self.grad_out = keep_rows, steps_limit, grad_out
        self.keep_gradients, self.tracker, self.emit_state = keep_gradients, tracker, emit_state
        self.asked = asked or {}  # each view's option value (losscli.views)
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
        self.last_block = None  # the last block as the views saw it
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
            gradients = block_run.add(prepared, raw)
        self._add_views(prepared, raw, gradients, groups)
        if self.expected is None:
            self.expected = _expected_factor(block_run, block[names[0]])
        for name, gradient in gradients.items():
            # In the shape the input was read in ((T,C) CTC log_probs, (N,1) targets).
            shape = block[name].array.shape
            if gradient.shape != shape and gradient.size == math.prod(shape):
                gradient = gradient.reshape(shape)
            self.stats.setdefault(name, engine.GradientStats([])).add(gradient)
            if name == self.first_float and self.grad_out is not None:
                if self.writer is None:
                    trailing = gradient.shape[1:] if gradient.ndim else None
                    self.writer = BlockWriter(
                        self.grad_out, trailing, gradient.dtype, block[name].header
                    )
                self.writer.add(gradient, self.expected)
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
        self.block_run = engine.BlockRun(
            spec, reduction=self.ctx.reduction, device=self.device, dtype=self.dtype,
            grad=self.grad, keep_rows=self.keep_rows, convert_from=self.conversion,
            keep_elements=True,
        )  # fmt: skip
        first = block[spec.inputs[0].name]
        targets = block[spec.inputs[1].name].source if len(spec.inputs) > 1 else None
        setup = views.Setup(
            spec=spec, asked=None, options=prepared.options, reduction=self.ctx.reduction,
            dtype=self.dtype, grad=self.grad, convert_from=self.conversion,
            emit_state=self.emit_state, classes=_class_count(spec, block, prepared),
            targets_kind=prepared.targets_kind, targets_source=targets,
            source=first.info.get("label", first.source),
        )  # fmt: skip
        self.parts = views.start(setup, self.asked)

    def _add_views(self, prepared, raw, gradients, groups) -> None:
        """Give the block just computed to every view the run keeps."""
        from losscli import views
        from losscli.engine import sample_mask

        block_run, spec = self.block_run, self.spec
        parts = block_run.last_elements
        elements = parts[0] if len(parts) == 1 else np.concatenate(parts)
        rows = block_run.last_rows
        rows = rows[0] if len(rows) == 1 else np.concatenate(rows)
        chunk = {n: prepared.arrays[n] for n in spec.input_names}
        block = views.Block(
            spec=spec, prepared=prepared, raw=raw, elements=elements,
            shape=block_run.last_shape, rows=rows,
            element_mask=sample_mask(elements.size, chunk, prepared.options),
            row_mask=sample_mask(len(rows), chunk, prepared.options),
            first_row=self.base_row + self.rows[self.names[0]], groups=groups,
            gradients=gradients,
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
                if factor != 1.0:
                    np.multiply(gradient, factor, out=gradient)
                gradients[name] = gradient
        summary = None
        if grad:
            summary = {}
            for name, gradient_stats in self.stats.items():
                gradient_stats.shape = shapes[name]
                written = None  # the min and max are the values the file holds
                if self.writer is not None and name == self.first_float:
                    written = partial(self.writer.as_written, factor=factor)
                summary[name] = gradient_stats.summary(factor, written)
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
            else _rows(first_prepared.arrays[spec.inputs[0].name], spec)
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
                i.name: _input_summary(first[i.name], kind, i, shapes[i.name]) for i in spec.inputs
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
        class_names = _class_names(result, ctx, first, spec)
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


def _class_names(result: Result, ctx, first, spec: LossSpec) -> list[str] | None:
    """Class names: --classes where the targets were names it mapped, else the predictions'
    header (where the targets are class indices)."""
    if result.targets_kind not in ("class indices", "class names, mapped to indices"):
        return None
    named = result.targets_kind == "class names, mapped to indices"
    return (ctx.classes if named else None) or first[spec.inputs[0].name].header


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


def _input_summary(inp: InputArray, targets_kind, input_spec, shape) -> dict[str, Any]:
    """What JSON and the table say about one input: source, shape, and how it was read."""
    read_as = READ_AS[input_spec.role]
    if input_spec.name == "targets" and targets_kind:
        read_as = targets_kind
    summary = {"source": inp.info.get("label", inp.source), "shape": shape, "read_as": read_as}
    summary["shards"] = inp.info.get("shards", 1)
    for key in ("format", "header", "index_column"):
        if key in inp.info:
            summary[key] = inp.info[key]
    return summary


def _rows(array: np.ndarray, spec: LossSpec) -> int:
    """How many samples the first input holds (its batch axis)."""
    axis = spec.batch_axis if array.ndim > spec.batch_axis else 0
    return int(array.shape[axis]) if array.ndim else 1


def compute(
    loss: str,
    *inputs: Any,
    reduction: str = "mean",
    device: str = "cpu",
    dtype: str = "float32",
    grad: bool = True,
    allow_nonfinite: bool = False,
    classes: list[str] | None = None,
    **options: Any,
) -> Result:
    """Compute a loss from array-likes; see ``losscli.compute``."""
    from losscli.registry import get_spec

    spec = get_spec(loss)
    if len(inputs) != len(spec.inputs):
        raise OptionError(
            f"{spec.name} takes {len(spec.inputs)} inputs ({', '.join(spec.input_names)}); "
            f"got {len(inputs)}"
        )
    arrays = {}
    for input_spec, value in zip(spec.inputs, inputs):
        array = np.asarray(value)
        if array.dtype.kind not in "biufOUS":
            raise OptionError(f"{input_spec.name}: dtype {array.dtype} is not numeric")
        if array.dtype.kind == "b":
            array = array.astype(np.float64)
        arrays[input_spec.name] = InputArray("array", array)
    ctx = Context(
        reduction=reduction, allow_nonfinite=allow_nonfinite, classes=classes, dtype=dtype
    )
    return compute_inputs(spec, arrays, options, ctx, device=device, dtype=dtype, grad=grad)
