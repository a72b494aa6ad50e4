"""The result of one loss computation, and its JSON form (SPEC section 4)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from losscli.steps import Steps
from losscli.values import plain


def _has_nonfinite(value: Any) -> bool:
    if isinstance(value, np.ndarray):
        return value.size > 0 and not np.isfinite(value).all()
    return isinstance(value, float) and not math.isfinite(value)


@dataclass
class Result:
    """A loss value with everything that explains it, and the full gradients."""

    loss: str
    torch_class: str
    value: float | np.ndarray
    reduction: str
    options: dict[str, Any]
    device: str
    dtype: str
    inputs: dict[str, dict[str, Any]]
    gradients: dict[str, np.ndarray] | None
    gradient_summary: dict[str, dict[str, Any]] | None
    warnings: list[str] = field(default_factory=list)
    timing: dict[str, float] = field(default_factory=dict)
    targets_kind: str | None = None
    total: float = math.nan
    denominator: float = math.nan
    per_sample: np.ndarray | None = None
    per_sample_total: int = 0
    steps: Steps | None = None
    # What --fail-above / --fail-below decided (None without a gate).
    gate: dict[str, Any] | None = None
    # The mergeable state of the run (--emit-state), or None.
    state: dict[str, Any] | None = None
    # What each view shows, by view name (``losscli.views``): the standard error, the
    # per-class rows, the histogram, the top rows, --check...
    views: dict[str, Any] = field(default_factory=dict)

    def values(self) -> list[float]:
        """The loss as a flat list: one number, or every element for reduction none."""
        return np.asarray(self.value, dtype=np.float64).reshape(-1).tolist()

    def json_warnings(self) -> list[str]:
        """The warnings, plus one where JSON writes a NaN/inf value as null."""
        notes = list(self.warnings)
        summaries = (self.gradient_summary or {}).values()
        if _has_nonfinite(self.value) or any(
            _has_nonfinite(float(v)) for s in summaries for k, v in s.items() if k != "shape"
        ):
            notes.append("NaN or inf values are written as null")
        return notes

    def views_json(self) -> dict[str, Any]:
        """The JSON fields of the views, in the registry's order."""
        from losscli import views

        out: dict[str, Any] = {}
        for view in views.all_views():
            if view.name in self.views:
                out.update(plain(view.to_json(self.views[view.name])))
        return out

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of SPEC section 4 (with the ``gate`` of section 8)."""
        return {
            "loss": self.loss,
            "torch": self.torch_class,
            "value": plain(self.value),
            **self.views_json(),
            "reduction": self.reduction,
            "options": plain(self.options),
            "device": self.device,
            "dtype": self.dtype,
            "inputs": plain(self.inputs),
            "gradient": plain(self.gradient_summary),
            "warnings": self.json_warnings(),
            "gate": plain(self.gate),
            "timing": {k: round(v, 6) for k, v in self.timing.items()},
        }
