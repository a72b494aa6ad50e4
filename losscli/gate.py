"""The gates: --fail-above / --fail-below decide the exit code of a result."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from losscli.errors import EXIT_GATE
from losscli.options import Common
from losscli.result import Result


@dataclass
class Gate:
    """What --fail-above / --fail-below decided, for stderr and JSON."""

    fail_above: float | None
    fail_below: float | None
    tripped: bool
    reason: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def gate_of_values(values: list[float], settings: Common) -> Gate | None:
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


def gate_of(result: Result, settings: Common) -> Gate | None:
    """What --fail-above / --fail-below decide about ``result`` (also set on it, for JSON)."""
    gate = gate_of_values(result.values(), settings)
    result.gate = gate.to_dict() if gate else None
    return gate


def exit_code(gate: Gate | None) -> int:
    return EXIT_GATE if gate is not None and gate.tripped else 0
