"""``--check``: how far the value and gradient in the chosen dtype and device are from a
float64 recomputation on the CPU, and whether the float64 gradient agrees with finite
differences on a few sampled rows.

The recomputation runs block by block beside the run itself (the inputs are then read in
float64, so that reading in a narrow dtype is part of the error measured); what it keeps
merges like the rest of a state: the float64 sum and denominator, the sums of squares of the
gradient differences and of the float64 gradient, and the largest finite-difference error.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# Above these relative errors --check warns: the value, the gradient (L2), finite differences.
VALUE_TOLERANCE = 1e-3
GRAD_TOLERANCE = 1e-2
FD_TOLERANCE = 1e-3
FD_ROWS = 4  # rows sampled from the first block
FD_COORDINATES = 3  # coordinates per sampled row


class Check:
    """The float64 CPU reference of one run, block by block."""

    def __init__(self, spec, reduction: str, grad: bool, convert_from: str | None, dtype: str):
        from losscli import engine

        # --from clamps probabilities at the run's epsilon, in the reference too: --check
        # measures rounding, not the clamp. The reference is autograd's, never a fused
        # kernel's: what a kernel computes is checked against it.
        self.reference = engine.BlockRun(
            spec, reduction=reduction, device="cpu", dtype="float64", grad=grad,
            convert_from=convert_from, convert_dtype=dtype, fused=False,
        )  # fmt: skip
        self.dtype = dtype
        self.spec, self.grad, self.convert_from = spec, grad, convert_from
        self.diff_squares = self.ref_squares = 0.0
        self.fd_max: float | None = None
        self.fd_points = 0

    def add(self, prepared, gradients: dict[str, np.ndarray], raw=None, scale=1.0) -> None:
        """Recompute one block in float64 and compare the gradients of its sum (given times
        ``scale``; the sums of squares kept are of the gradients of the sum)."""
        reference = self.reference.add(prepared, raw, scale)
        for name, ref in reference.items():
            ref = ref.reshape(-1)
            got = np.asarray(gradients[name], dtype=np.float64).reshape(-1)
            difference = got - ref
            self.diff_squares += float(np.dot(difference, difference)) / scale**2
            self.ref_squares += float(np.dot(ref, ref)) / scale**2
        if self.fd_max is None and self.grad:
            self.fd_max, self.fd_points = finite_differences(
                self.spec, prepared, raw, self.convert_from, self.dtype
            )

    def to_state(self) -> dict[str, Any]:
        reference = self.reference
        return {
            "sum": reference.total,
            "denominator": reference.denominator if reference.mean else None,
            "grad_diff_squares": self.diff_squares if self.grad else None,
            "grad_ref_squares": self.ref_squares if self.grad else None,
            "fd_max_rel_error": self.fd_max,
            "fd_points": self.fd_points,
        }


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One check state from those of parts of the rows."""
    from losscli import views

    def total(key):
        values = [p[key] for p in parts]
        return None if any(v is None for v in values) else views.fsum(values)

    errors = [p["fd_max_rel_error"] for p in parts if p["fd_max_rel_error"] is not None]
    return {
        "sum": total("sum"),
        "denominator": total("denominator"),
        "grad_diff_squares": total("grad_diff_squares"),
        "grad_ref_squares": total("grad_ref_squares"),
        "fd_max_rel_error": max(errors) if errors else None,
        "fd_points": sum(p["fd_points"] for p in parts),
    }


def report(state: dict[str, Any], value: float, dtype: str, device: str) -> dict[str, Any]:
    """The JSON ``check`` object of a run, and its warnings (``warnings``)."""
    denominator = state["denominator"]
    if denominator is None:
        reference = state["sum"]
    else:
        reference = state["sum"] / denominator if denominator else math.nan
    value_error = _relative(value, reference)
    grad_error = None
    if state["grad_diff_squares"] is not None:
        norm = math.sqrt(state["grad_ref_squares"])
        grad_error = math.sqrt(state["grad_diff_squares"]) / norm if norm else 0.0
    fd = state["fd_max_rel_error"]
    found = []
    where = f"--dtype {dtype} on {device}"
    if value_error is not None and value_error > VALUE_TOLERANCE:
        found.append(f"the value in {where} is off by {value_error:.2g} (relative) from float64")
    if grad_error is not None and grad_error > GRAD_TOLERANCE:
        found.append(f"the gradient in {where} is off by {grad_error:.2g} (relative L2)")
    if fd is not None and fd > FD_TOLERANCE:
        found.append(
            f"the float64 gradient differs from finite differences by {fd:.2g} (relative) on "
            "sampled rows"
        )
    return {
        "value_rel_error": value_error,
        "grad_rel_error": grad_error,
        "fd_max_rel_error": fd,
        "reference_value": reference,
        "fd_points": state["fd_points"],
        "warnings": ["--check: " + "; ".join(found)] if found else [],
    }


def _relative(value: float, reference: float) -> float | None:
    if not (math.isfinite(value) and math.isfinite(reference)):
        return None if value != value and reference != reference else math.inf
    if reference == 0:
        return abs(value)
    return abs(value - reference) / abs(reference)


def finite_differences(
    spec, prepared, raw, convert_from, dtype: str = "float64"
) -> tuple[float | None, int]:
    """The largest relative difference between the float64 gradient of a sampled row's loss
    (the sum of its elements) and central differences, at a few coordinates of each of a few
    rows of ``prepared``. Points where the loss is not smooth (a kink's one-sided
    differences disagree) or not defined a step away (a probability at 0 or 1) are skipped,
    and a gradient below the rounding noise of the row's loss is compared absolutely.
    (None, 0) where rows cannot be taken apart (ctc, a 0-d input). ``dtype``: the run's,
    whose epsilon --from clamps with."""
    from losscli import convert
    from losscli.torch_loader import import_torch

    torch = import_torch()
    names = spec.input_names
    first = names[0]
    given = raw.reshape(prepared.arrays[first].shape) if raw is not None else None
    arrays = prepared.arrays
    if not spec.chunkable or arrays[first].ndim == 0 or not spec.float_inputs:
        return None, 0
    count = len(arrays[first])
    rows = np.unique(np.linspace(0, count - 1, min(FD_ROWS, count)).round().astype(int))
    subset = {n: arrays[n][rows] for n in names}
    if given is not None:
        subset[first] = given[rows]
    options = {}
    for key, value in prepared.options.items():
        if isinstance(value, np.ndarray):
            value = value[rows] if key in prepared.row_options else value
            value = torch.from_numpy(np.array(value, dtype=np.float64))
        elif isinstance(value, np.floating):
            value = float(value)
        options[key] = value
    loss_fn = spec.unreduced(torch, options)
    target = spec.float_inputs[0]
    floats = {i.name for i in spec.inputs if i.role in ("float", "label")}

    def tensor(name, array):
        kind = torch.float64 if name in floats or array.dtype.kind == "f" else torch.int64
        return torch.from_numpy(np.array(array)).to(kind)

    def loss_of(x) -> Any:
        tensors = {n: tensor(n, subset[n]) for n in names}
        tensors[target] = x
        if given is not None and target == first:
            tensors[first] = convert.tensor(torch, spec, convert_from, x, dtype)
        elements = loss_fn(*(tensors[n] for n in names))
        return elements.reshape(len(rows), -1).sum(1)

    x = tensor(target, subset[target]).clone().requires_grad_(True)
    try:
        with torch.enable_grad():
            loss_of(x).sum().backward()
    except RuntimeError:
        return None, 0
    analytic = x.grad.numpy().reshape(len(rows), -1)
    base = x.detach().numpy().reshape(len(rows), -1)
    worst, points = 0.0, 0
    with torch.no_grad():
        for r in range(len(rows)):
            order = np.argsort(-np.abs(analytic[r]), kind="stable")[:FD_COORDINATES]
            for j in order.tolist():
                h = 1e-6 * max(1.0, abs(base[r, j]))
                values = []
                for step in (h, 0.0, -h, h / 10, -h / 10):
                    moved = base.copy()
                    moved[r, j] += step
                    try:
                        values.append(float(loss_of(torch.from_numpy(moved.reshape(x.shape)))[r]))
                    except RuntimeError:  # outside the loss's domain (bce past 1)
                        break
                if len(values) < 5 or not all(map(math.isfinite, values)):
                    continue
                forward, backward = (values[0] - values[1]) / h, (values[1] - values[2]) / h
                # Smooth: one-sided differences differ by about h * f'' (tiny); at a kink
                # by the jump of the derivative.
                jump = abs(forward - backward)
                if jump > max(1e-3 * max(abs(forward), abs(backward)), 1e-4):
                    continue  # a kink (|x| at 0, a margin's edge): no derivative to compare
                central = (values[0] - values[2]) / (2 * h)
                finer = (values[3] - values[4]) / (h / 5)
                # Rounding makes a difference quotient uncertain by about eps |f| / h.
                noise = 1e-6 * (1.0 + abs(values[1]))
                if abs(central - finer) > 1e-3 * max(abs(central), noise):
                    continue  # steeper than the step resolves (a cosine near a zero vector)
                denominator = max(abs(central), abs(analytic[r, j]), noise)
                worst = max(worst, abs(central - analytic[r, j]) / denominator)
                points += 1
    return (worst if points else None), points
