"""Files or arrays in, Result out: the one path from inputs to a Result and an exit code.

``run_files`` serves the CLI and ``losscli.compute_files``; ``compute_inputs`` (inputs as
read -> checks -> engine -> Result) serves it and ``losscli.compute`` on arrays.

The order of ``run_files`` is the contract: count and open every source once (positional
inputs and --weight/--pos-weight files); refuse a --grad-out that would replace any of them;
read; validate on the CPU; compute; write the gradient atomically; evaluate the gate.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

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
        dtype = float_dtype if input_spec.differentiable else np.float64
        requests.append(Request(columns, names, dtype))
    return requests


def read_inputs(spec: LossSpec, args: list, sources, settings: Common) -> dict:
    """Read every input; inputs that name one argument (single-file mode) share one read."""
    from losscli.io import read_source
    from losscli.io.shards import join_shards, shard_args

    requests = _requests(spec, settings)
    groups: dict[int, list[int]] = {}
    for position, arg in enumerate(args):
        groups.setdefault(id(arg), []).append(position)
    result = {}
    for positions in groups.values():
        arg = args[positions[0]]
        wanted = [requests[p] for p in positions]
        shards = shard_args(arg)
        if shards is None:
            arrays = read_source(sources.open(arg), wanted)
        else:  # one read per shard, joined per request
            per_shard = [read_source(sources.open(shard), wanted) for shard in shards]
            arrays = [
                join_shards(arg.path, list(parts), request.columns)
                for parts, request in zip(zip(*per_shard), wanted)
            ]
        for position, array in zip(positions, arrays):
            result[spec.inputs[position].name] = array
    return result


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
):
    """Read the sources, compute, write --grad-out; returns (Result, Gate or None).
    ``also_read``: identities of other files the run reads (a batch's jobs file), which
    --grad-out must not replace either."""
    import contextlib

    from losscli import engine
    from losscli.io import (
        ReadOptions,
        SourceSet,
        check_output_path,
        check_output_shape,
        parse_source,
        read_vector,
        write_array,
    )
    from losscli.io.shards import shard_args
    from losscli.io.sources import delimiter_option, format_option
    from losscli.validate import Context

    progress = progress or (lambda text: contextlib.nullcontext())
    env = env or {}
    classes = check_settings(settings)
    defaults = ReadOptions(
        format_option(settings.input_format), delimiter_option(settings.delimiter), settings.header
    )
    # An argument named twice (single-file mode, or by hand) is one source, read once.
    parsed = {text: parse_source(text, defaults) for text in source_texts}
    if sum(parsed[text].path == "-" for text in source_texts) > 1:  # '-', '-?header=no'...
        raise OptionError(
            "only one input can come from stdin ('-'); write the others to files first"
        )
    texts = input_sources(spec, source_texts, settings)
    if settings.grad_out is not None and settings.no_grad:
        raise OptionError("--grad-out needs the gradient; drop --no-grad")
    args = [parsed[text] for text in texts]
    notes: list[str] = []  # what reading decided about option files (a header, an index)
    with SourceSet(stdin_fd=stdin) as sources:
        engine.preload_torch()
        for arg in args:
            for shard in shard_args(arg) or [arg]:
                sources.open(shard)
        options = dict(options)
        for option in spec.options:  # vectors given as files are sources too
            if option.kind == VECTOR and options.get(option.name) is not None:
                value = options[option.name]
                options[option.name] = read_vector(option.flag, value, sources, defaults, notes)
        grad_out = None
        if settings.grad_out is not None:
            read = {**(also_read or {}), **sources.identities}
            grad_out = check_output_path("--grad-out", settings.grad_out, read)
        started = time.perf_counter()
        with progress(f"reading {', '.join(dict.fromkeys(texts))}"):
            inputs = read_inputs(spec, args, sources, settings)
        read_s = time.perf_counter() - started
        # Sources stay open while validation locates errors (line numbers of text rows).
        first_float = spec.float_inputs[0]
        if grad_out is not None:
            check_output_shape("--grad-out", grad_out, inputs[first_float].array.shape)
        ctx = Context(
            reduction=settings.reduction,
            allow_nonfinite=settings.allow_nonfinite,
            classes=classes,
            dtype=settings.dtype,
        )
        for message in [*notes, *(n for item in inputs.values() for n in item.info["notes"])]:
            if message not in ctx.warnings:
                ctx.warn(message)
        table = settings.format == "table"
        try:
            with progress(f"computing {spec.torch_class} on {settings.device}"):
                result = compute_inputs(
                    spec,
                    inputs,
                    options,
                    ctx,
                    device=settings.device,
                    dtype=settings.dtype,
                    grad=not settings.no_grad,
                    keep_rows=settings.limit if settings.per_sample and table else 0,
                    steps_limit=settings.limit if settings.steps and table else 0,
                    read_s=read_s,
                )
        except DeviceError as error:
            if "device" in env:
                raise DeviceError(f"{env['device']}={settings.device}: {error.message}") from None
            raise
    if grad_out is not None:
        gradient = result.gradients[first_float]
        write_array(grad_out, gradient, inputs[first_float].header)
    gate = _gate(result.values(), settings)
    result.gate = gate.to_dict() if gate else None
    return result, gate


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
    result, _ = run_files(spec, texts, options, settings, stdin=stdin)
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
    if name in ("pred_cols", "target_cols", "classes") and isinstance(value, (list, tuple)):
        value = ",".join(map(str, value))
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
    # Flags and numbers convert as loss options do (the only integer, --limit, is >= 1).
    if bool in kinds:
        return OptionSpec(name, None, FLAG, "").convert(value)
    if int in kinds:
        return OptionSpec(name, None, INTEGER, "", low=1).convert(value)
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


def compute_inputs(
    spec: LossSpec,
    inputs: dict[str, InputArray],
    options: dict[str, Any],
    ctx: Context,
    *,
    device: str = "cpu",
    dtype: str = "float32",
    grad: bool = True,
    keep_rows: int = 0,
    steps_limit: int = 0,
    read_s: float = 0.0,
) -> Result:
    """Validate ``inputs`` on the CPU, compute on ``device``, and describe it all in a Result."""
    from losscli import engine

    options = check_options(spec, options, ctx.reduction)
    for input_spec in spec.inputs:
        inp = inputs[input_spec.name]
        if inp.array.size == 0:
            raise InputError(
                f"{input_spec.name} ({inp.source}): has no data (shape {list(inp.array.shape)})"
            )
        if input_spec.role in (FLOAT, LABEL):  # the inputs the engine computes in --dtype
            check_representable(input_spec.name, inp, ctx)
    shapes = {n: list(inputs[n].array.shape) for n in spec.input_names}
    prepared = spec.prepare(inputs, options, ctx)
    ctx.finish()
    engine.resolve_device(device)  # an unusable device is refused before any computation
    with warnings.catch_warnings():
        # torch's own warnings (KLDivLoss's reduction advice, ...) are said by losscli where
        # they matter; none reaches stderr.
        warnings.simplefilter("ignore")
        output = engine.run(
            spec,
            prepared,
            reduction=ctx.reduction,
            device=device,
            dtype=dtype,
            grad=grad,
            keep_rows=keep_rows,
        )
    summary = None
    if output.gradients is not None:
        # Gradients in the shape each input was read in ((T,C) CTC log_probs, (N,1) targets).
        for name, gradient in output.gradients.items():
            if list(gradient.shape) != shapes[name] and gradient.size == math.prod(shapes[name]):
                output.gradients[name] = gradient.reshape(shapes[name])
        summary = {n: engine.gradient_summary(g) for n, g in output.gradients.items()}
    steps = (
        spec.steps_table(prepared.arrays, prepared.options, steps_limit) if steps_limit else None
    )
    return Result(
        loss=spec.name,
        torch_class=spec.torch_class,
        value=output.value,
        reduction=ctx.reduction,
        options=prepared.options,
        device=output.device,
        dtype=dtype,
        inputs={
            i.name: _input_summary(inputs[i.name], prepared.targets_kind, i, shapes[i.name])
            for i in spec.inputs
        },
        gradients=output.gradients,
        gradient_summary=summary,
        warnings=ctx.warnings,
        timing={"read_s": read_s, "compute_s": output.compute_s},
        targets_kind=prepared.targets_kind,
        total=output.total,
        denominator=output.denominator,
        per_sample=output.elements if keep_rows else None,
        per_sample_total=_rows(prepared.arrays[spec.inputs[0].name], spec),
        steps=steps,
    )


def _input_summary(inp: InputArray, targets_kind, input_spec, shape) -> dict[str, Any]:
    """What JSON and the table say about one input: source, shape, and how it was read."""
    read_as = READ_AS[input_spec.role]
    if input_spec.name == "targets" and targets_kind:
        read_as = targets_kind
    summary = {"source": inp.source, "shape": shape, "read_as": read_as}
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
