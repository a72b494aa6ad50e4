"""The pipeline shared by the CLI and ``losscli.compute``: validate, compute, build a Result."""

from __future__ import annotations

from typing import Any

import numpy as np

from losscli.errors import OptionError
from losscli.io import InputArray
from losscli.registry import LossSpec
from losscli.result import Result
from losscli.validate import Context


def check_options(spec: LossSpec, options: dict[str, Any], reduction: str) -> dict[str, Any]:
    """The loss's options with torch's defaults filled in; unknown names are refused."""
    unknown = set(options) - set(spec.options)
    if unknown:
        known = ", ".join(spec.options) or "none"
        raise OptionError(
            f"{spec.name} has no option {', '.join(sorted(unknown))}; its options: {known}"
        )
    if reduction not in spec.reductions:
        raise OptionError(
            f"--reduction {reduction!r} is not one of {', '.join(spec.reductions)} for {spec.name}"
        )
    return {**spec.options, **options}


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
    prepared = spec.prepare(inputs, options, ctx)
    engine.resolve_device(device)  # an unusable device is refused before any computation
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
            n: {"source": inputs[n].source, "shape": list(prepared.arrays[n].shape)}
            for n in spec.input_names
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
    ctx = Context(reduction=reduction, allow_nonfinite=allow_nonfinite, classes=classes)
    return compute_inputs(spec, arrays, options, ctx, device=device, dtype=dtype, grad=grad)
