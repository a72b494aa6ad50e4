"""The pipeline shared by the CLI and ``losscli.compute``: validate, compute, build a Result."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from losscli.errors import InputError, OptionError
from losscli.io import InputArray
from losscli.registry import FLOAT, INDEX, LABEL, LENGTH, LossSpec
from losscli.result import Result
from losscli.validate import Context, check_representable

READ_AS = {FLOAT: "values", LABEL: "labels", LENGTH: "lengths", INDEX: "class indices"}


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
        if input_spec.differentiable:
            check_representable(input_spec.name, inp, ctx)
    shapes = {n: list(inputs[n].array.shape) for n in spec.input_names}
    prepared = spec.prepare(inputs, options, ctx)
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
    steps = spec.steps(prepared.arrays, prepared.options, steps_limit) if steps_limit else None
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
