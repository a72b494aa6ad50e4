"""Files in, result out: the one path from source arguments to a Result and an exit code.

Used by the CLI and by ``losscli.compute_files``. The order matters and is the contract:
count and open every source once (positional inputs and --weight/--pos-weight files); refuse
a --grad-out that would replace any of them; read; validate on the CPU; compute; write the
gradient atomically; evaluate the gate.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

from losscli.errors import EXIT_GATE, DeviceError, OptionError
from losscli.options import Common
from losscli.registry import INDEX, LossSpec, get_spec

# Loss options that take a comma-separated list or a file.
VECTOR_OPTIONS = ("weight", "pos_weight")


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
    from losscli.io.sources import delimiter_option

    for flag, value in (
        ("--fail-above", settings.fail_above),
        ("--fail-below", settings.fail_below),
    ):
        if value is not None and not math.isfinite(value):
            raise OptionError(f"{flag} {value} is not a finite number")
    delimiter_option(settings.delimiter)
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
    if sources.count("-") > 1:
        raise OptionError(
            "only one input can come from stdin ('-'); write the others to files first"
        )
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

    requests = _requests(spec, settings)
    groups: dict[int, list[int]] = {}
    for position, arg in enumerate(args):
        groups.setdefault(id(arg), []).append(position)
    result = {}
    for positions in groups.values():
        opened = sources.open(args[positions[0]])
        arrays = read_source(opened, [requests[p] for p in positions])
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
):
    """Read the sources, compute, write --grad-out; returns (Result, Gate or None)."""
    import contextlib

    from losscli import engine
    from losscli.core import compute_inputs
    from losscli.io import (
        ReadOptions,
        SourceSet,
        check_output_path,
        check_output_shape,
        parse_source,
        read_vector,
        write_array,
    )
    from losscli.io.sources import delimiter_option, format_option
    from losscli.validate import Context

    progress = progress or (lambda text: contextlib.nullcontext())
    env = env or {}
    classes = check_settings(settings)
    texts = input_sources(spec, source_texts, settings)
    if settings.grad_out is not None and settings.no_grad:
        raise OptionError("--grad-out needs the gradient; drop --no-grad")
    defaults = ReadOptions(
        format_option(settings.input_format), delimiter_option(settings.delimiter), settings.header
    )
    # An argument named twice (single-file mode, or by hand) is one source, read once.
    parsed: dict[str, Any] = {}
    args = [parsed.setdefault(t, parse_source(t, defaults)) for t in texts]
    with SourceSet(stdin_fd=stdin) as sources:
        engine.preload_torch()
        for arg in args:
            sources.open(arg)
        options = dict(options)
        for name in VECTOR_OPTIONS:
            if name in options and options[name] is not None:
                options[name] = read_vector(f"--{name.replace('_', '-')}", options[name], sources)
        grad_out = None
        if settings.grad_out is not None:
            grad_out = check_output_path("--grad-out", settings.grad_out, sources.identities)
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
        for item in inputs.values():
            for message in item.info.get("notes", []):
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


def compute_files(loss: str, *sources: str, **settings_and_options: Any):
    """Compute ``loss`` from files, as the command line does: ``compute_files("ce",
    "logits.csv", "labels.csv", reduction="sum", weight="1,2,1")``. Common options go by
    their long names (``dtype``, ``pred_cols``, ``grad_out``...), loss options by their torch
    names. Returns the Result (its ``gate`` says whether a gate tripped)."""
    spec = get_spec(loss)
    common = {k: v for k, v in settings_and_options.items() if k in Common.__dataclass_fields__}
    options = {k: v for k, v in settings_and_options.items() if k not in common}
    result, _ = run_files(spec, list(sources), options, Common(**common), stdin=None)
    return result
