"""Views beyond the number, built from mergeable state (so they stream and merge): the
standard error and 95% interval of a mean, perplexity and bits, and per-class breakdowns."""

from __future__ import annotations

import math
from typing import Any

# The 0.975 quantile of the standard normal distribution.
Z95 = 1.959963984540054


def _weighted(options: dict[str, Any]) -> bool:
    return any(options.get(name) is not None for name in ("weight", "pos_weight"))


def uncertainty(
    total: float, denominator: float, squares: float, reduction: str, options: dict
) -> dict[str, Any]:
    """The standard error of a mean of equally weighted elements (the unreduced loss, each
    element taken as a sample; for class losses each counted target) and its 95% interval,
    value +- 1.96 SE; or why it does not apply: {"stderr", "ci95", "n"} or {"note"}."""
    if reduction != "mean":
        return {"note": f"a standard error is of a mean; --reduction {reduction} is not one"}
    if _weighted(options):
        return {"note": "a weighted mean: the standard error of a plain mean does not apply"}
    n = denominator
    if not n or n < 2 or not math.isfinite(total) or not math.isfinite(squares):
        return {"note": "needs at least two finite samples"}
    mean = total / n
    variance = max(squares - n * mean * mean, 0.0) / (n - 1)
    stderr = math.sqrt(variance / n)
    return {"stderr": stderr, "ci95": [mean - Z95 * stderr, mean + Z95 * stderr], "n": n}


def language_model(loss: str, reduction: str, value: float) -> dict[str, float]:
    """Perplexity exp(mean) and bits per sample mean / ln 2, for ce and nll with a mean."""
    if loss not in ("ce", "nll") or reduction != "mean" or not isinstance(value, float):
        return {}
    with_overflow = math.exp(value) if value < 709 else math.inf
    return {"perplexity": with_overflow, "bits": value / math.log(2)}


def by_class(sums, counts, names: list[str] | None) -> list[dict[str, Any]]:
    """Per target class: count, mean loss and share of the total loss."""
    grand = math.fsum(sums)
    rows = []
    for index, (total, count) in enumerate(zip(sums, counts)):
        label = names[index] if names and index < len(names) else index
        rows.append(
            {
                "class": label,
                "count": int(count),
                "mean": total / count if count else math.nan,
                "share": total / grand if grand else math.nan,
            }
        )
    return rows
