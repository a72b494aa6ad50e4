"""The standard error of a mean loss and its 95% interval (always on): from the count,
mean and M2 of the samples (``Moments``), which merge exactly."""

from __future__ import annotations

import math
from typing import Any

from losscli.views import Count, Moments, Number, Part, View, not_negative, number, real

ORDER = 10


class MomentsState(Part):
    """Count, mean and M2 of the samples (for the standard error)."""

    count: Count
    mean: Number
    m2: Number


class Uncertainty(View):
    name = "uncertainty"
    state_key = "moments"
    State = MomentsState
    kept = "always"
    summary_at = "value"
    example = "losscli ce sample_data/logits.csv sample_data/labels.csv"

    def start(self, setup):
        return Moments() if setup.shown or setup.emit_state else None

    def add(self, part: Moments, block) -> None:
        part.add(block.samples)

    def dump(self, part: Moments) -> dict[str, Any]:
        return {"count": part.count, "mean": number(part.mean), "m2": number(part.m2)}

    def load(self, path, data: MomentsState, core) -> Moments:
        mean = real(path, "moments.mean", data.mean)
        m2 = real(path, "moments.m2", data.m2)
        not_negative(path, "moments.m2", m2)
        return Moments(data.count, mean, m2)

    def check(self, path, part: Moments, core) -> None:
        """Samples are the loss elements, less those of ignored targets (class losses)."""
        from losscli.errors import InputError
        from losscli.state_checks import CLASS_INDICES

        ignores = "ignore_index" in core["options"] and any(
            info["read_as"] in CLASS_INDICES for info in core["inputs"].values()
        )
        if part.count > core["count"] or (part.count != core["count"] and not ignores):
            raise InputError(f"{path}: moments.count: {part.count} samples, where the state "
                             f"has {core['count']} loss elements (count)")  # fmt: skip

    def combine(self, parts: list[Moments]) -> Moments:
        merged = Moments()
        for part in parts:
            merged.merge(part)
        return merged

    def result(self, part: Moments | None, finish) -> dict[str, Any]:
        from losscli import views

        if finish.reduction == "none":
            return {"note": "reduction none gives every element, not a mean"}
        if part is None and finish.core is None:  # a run that shows only its value
            return None
        if part is None:  # a state without them (version 1): from the sum of squares
            core = finish.core
            n = core["denominator"] or 0
            mean = core["sum"] / n if n else math.nan
            m2 = core["sum_squares"] - n * mean * mean if n else math.nan
            part = Moments(int(n) if n == n else 0, mean, m2)
        scaled = finish.spec.mean_scale is not None
        return views.standard_error(part, finish.reduction, finish.options, scaled)

    def to_json(self, shown: dict[str, Any]) -> dict[str, Any]:
        out = {"stderr": shown.get("stderr"), "ci95": shown.get("ci95")}
        if "note" in shown:
            out["stderr_note"] = shown["note"]
        return out

    def summary(self, shown: dict[str, Any]) -> list[tuple[str, str]]:
        return [("95% interval", interval_text(shown))]

    def report_summary(self, result) -> list[tuple[str, str]]:
        from losscli.report.html import number, text

        if result.get("ci95") is None:
            note = result.get("stderr_note")
            return [("95% interval", text(f"not given: {note}"))] if note else []
        low, high = result["ci95"]
        interval = (
            f'[{number(low, "ci95.0")}, {number(high, "ci95.1")}]<br><span class="meta">'
            f"standard error {number(result['stderr'], 'stderr')}</span>"
        )
        return [("95% interval", interval)]


def interval_text(uncertainty: dict) -> str:
    """A 95% interval in words, or why there is none."""
    from losscli.values import format_number

    if "stderr" not in uncertainty:
        return f"not given: {uncertainty.get('note', 'no mean')}"
    low, high = uncertainty["ci95"]
    return (
        f"[{format_number(low)}, {format_number(high)}] (value +- 1.96 x standard error "
        f"{format_number(uncertainty['stderr'])}, n {format_number(uncertainty['n'])})"
    )


VIEW = Uncertainty()
