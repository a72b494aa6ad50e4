"""Views beyond the number, built from mergeable state (so they stream and merge): the
standard error and 95% interval of a mean, perplexity and bits, per-class and per-group
breakdowns, the histogram and quantiles of the per-row loss, the rows of highest loss, and
the paired comparison of two runs."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# The 0.975 quantile of the standard normal distribution.
Z95 = 1.959963984540054


def fsum(values) -> float:
    """An exact float sum, as math.fsum, that overflows to an infinity and gives NaN for
    inf - inf instead of raising."""
    values = [float(v) for v in values]
    try:
        return math.fsum(values)
    except OverflowError:
        return math.copysign(math.inf, sum(math.copysign(1.0, v) for v in values))
    except ValueError:  # inf + -inf
        return math.nan


def _weighted(options: dict[str, Any]) -> bool:
    return any(options.get(name) is not None for name in ("weight", "pos_weight"))


class Moments:
    """Count, mean and sum of squared deviations (M2) of samples, added block by block and
    merged with Chan's formulas: a variance that stays exact where the mean is far larger
    than the spread (where sum of squares - n mean^2 cancels to nothing)."""

    def __init__(self, count: int = 0, mean: float = 0.0, m2: float = 0.0) -> None:
        self.count, self.mean, self.m2 = count, mean, m2

    def add(self, values) -> None:
        """Samples: a 1-D float64 NumPy array, or torch tensor on any device."""
        count = len(values)
        if count:
            mean = float(values.mean())
            deviations = values - mean
            self.merge(Moments(count, mean, float((deviations * deviations).sum())))

    def merge(self, other: Moments) -> None:
        if not other.count:
            return
        if not self.count:
            self.count, self.mean, self.m2 = other.count, other.mean, other.m2
            return
        count = self.count + other.count
        with np.errstate(invalid="ignore", over="ignore"):
            delta = other.mean - self.mean
            self.m2 = self.m2 + other.m2 + delta * delta * self.count * other.count / count
            self.mean = self.mean + delta * other.count / count
        self.count = count

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "mean": self.mean, "m2": self.m2}


def uncertainty(
    moments: Moments, reduction: str, options: dict, scaled: bool = False
) -> dict[str, Any]:
    """The standard error of a mean of equally weighted samples (the unreduced loss's
    elements; for class losses each counted target) and its 95% interval, mean +- 1.96 SE;
    or why it does not apply: {"stderr", "ci95", "n"} or {"note"}. ``scaled``: the loss's
    mean scales each element (ctc divides by target lengths)."""
    if reduction != "mean":
        return {"note": f"a standard error is of a mean; --reduction {reduction} is not one"}
    if _weighted(options):
        return {"note": "a weighted mean: the standard error of a plain mean does not apply"}
    if scaled:
        return {"note": "the mean scales each sample's loss: the standard error does not apply"}
    n, mean, m2 = moments.count, moments.mean, moments.m2
    if n < 2 or not math.isfinite(mean) or not math.isfinite(m2):
        return {"note": "needs at least two samples, all finite"}
    stderr = math.sqrt(max(m2, 0.0) / (n - 1) / n)
    return {"stderr": stderr, "ci95": [mean - Z95 * stderr, mean + Z95 * stderr], "n": n}


def language_model(spec, reduction: str, value: float) -> dict[str, float]:
    """Perplexity exp(mean) and bits per sample mean / ln 2, for a loss whose spec says it
    reads as a language model's (ce, nll) with a mean."""
    if not spec.perplexity or reduction != "mean" or not isinstance(value, float):
        return {}
    with_overflow = math.exp(value) if value < 709 else math.inf
    return {"perplexity": with_overflow, "bits": value / math.log(2)}


def breakdown(key: str, labels: list, sums: list[float], counts: list[int]) -> list[dict]:
    """Per label ({key: label}): count, mean loss and share of the total loss."""
    grand = fsum(sums)
    return [
        {
            key: label,
            "count": int(count),
            "mean": total / count if count else math.nan,
            "share": total / grand if grand else math.nan,
        }
        for label, total, count in zip(labels, sums, counts)
    ]


def by_class(sums, counts, names: list[str] | None) -> list[dict[str, Any]]:
    """Per target class (by name where known): count, mean loss and share of the total."""
    labels = [names[i] if names and i < len(names) else i for i in range(len(sums))]
    return breakdown("class", labels, sums, counts)


# ------------------------------------------------------------------ histogram and quantiles

# The sketch's relative accuracy: a quantile it gives is within 1% of a value of that rank.
SKETCH_ALPHA = 0.01
_GAMMA = (1 + SKETCH_ALPHA) / (1 - SKETCH_ALPHA)
_LOG_GAMMA = math.log(_GAMMA)
QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}
HIST_BINS = 12


class Sketch:
    """A mergeable summary of the per-sample loss (a DDSketch): counts of values in
    logarithmic buckets ``(GAMMA**(k-1), GAMMA**k]`` (by magnitude, for positive and negative
    values apart), exact zeros, non-finite values, the exact min and max. Merging adds the
    counts, so a quantile of merged sketches is the quantile of one run over every row."""

    def __init__(self) -> None:
        self.positive: dict[int, int] = {}
        self.negative: dict[int, int] = {}
        self.zeros = self.nonfinite = self.count = 0
        self.low, self.high = math.inf, -math.inf

    def add(self, values) -> None:
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        finite = np.isfinite(values)
        self.nonfinite += int(values.size - finite.sum())
        values = values[finite]
        if not values.size:
            return
        self.count += int(values.size)
        self.low, self.high = (
            min(self.low, float(values.min())),
            max(self.high, float(values.max())),
        )
        self.zeros += int((values == 0).sum())
        for store, part in (
            (self.positive, values[values > 0]),
            (self.negative, -values[values < 0]),
        ):
            if part.size:
                keys = np.ceil(np.log(part) / _LOG_GAMMA).astype(np.int64)
                found, counts = np.unique(keys, return_counts=True)
                for key, count in zip(found.tolist(), counts.tolist()):
                    store[key] = store.get(key, 0) + count

    def merge(self, other: Sketch) -> None:
        for mine, theirs in ((self.positive, other.positive), (self.negative, other.negative)):
            for key, count in theirs.items():
                mine[key] = mine.get(key, 0) + count
        self.zeros += other.zeros
        self.nonfinite += other.nonfinite
        self.count += other.count
        self.low, self.high = min(self.low, other.low), max(self.high, other.high)

    def to_dict(self) -> dict[str, Any]:
        return {
            "alpha": SKETCH_ALPHA,
            "count": self.count,
            "zeros": self.zeros,
            "nonfinite": self.nonfinite,
            "min": self.low if self.count else None,
            "max": self.high if self.count else None,
            "positive": {str(k): v for k, v in sorted(self.positive.items())},
            "negative": {str(k): v for k, v in sorted(self.negative.items())},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> Sketch:
        """A sketch read from a state; ValueError says what is wrong."""
        sketch = cls()
        if data.get("alpha") != SKETCH_ALPHA:
            raise ValueError(f"{where}: a histogram of accuracy {data.get('alpha')!r}")
        for name in ("count", "zeros", "nonfinite"):
            value = data.get(name)
            if not is_count(value):
                raise ValueError(f"{where}: histogram {name} {value!r} is not a count")
            setattr(sketch, name, value)
        for name, store in (("positive", sketch.positive), ("negative", sketch.negative)):
            buckets = data.get(name)
            if not isinstance(buckets, dict):
                raise ValueError(f"{where}: histogram {name} buckets are missing")
            for key, count in buckets.items():
                try:
                    index = int(key)
                except ValueError:
                    raise ValueError(
                        f"{where}: histogram bucket {key!r} is not an integer"
                    ) from None
                if not is_count(count) or not -100_000 < index < 100_000:
                    raise ValueError(f"{where}: histogram bucket {key!r} is not a count")
                store[index] = count
        if (
            sum(sketch.positive.values()) + sum(sketch.negative.values()) + sketch.zeros
            != sketch.count
        ):
            raise ValueError(f"{where}: histogram counts do not add up to its count")
        if sketch.count:
            try:
                low, high = (float(data.get(k)) for k in ("min", "max"))
                if isinstance(data.get("min"), bool) or isinstance(data.get("max"), bool):
                    raise TypeError
            except (TypeError, ValueError, OverflowError):
                raise ValueError(f"{where}: histogram min and max are not numbers") from None
            if not (math.isfinite(low) and math.isfinite(high)):
                raise ValueError(f"{where}: histogram min and max are not finite")
            if low > high:
                raise ValueError(f"{where}: histogram min > max")
            sketch.low, sketch.high = float(low), float(high)
        return sketch

    def _ordered(self):
        """(representative value, count) from the lowest bucket to the highest."""
        for key in sorted(self.negative, reverse=True):
            yield -_represent(key), self.negative[key]
        if self.zeros:
            yield 0.0, self.zeros
        for key in sorted(self.positive):
            yield _represent(key), self.positive[key]

    def quantile(self, q: float) -> float:
        """The value of rank ``q * (count - 1)`` (within SKETCH_ALPHA of it), clamped to
        [min, max]; the max is exact."""
        if not self.count:
            return math.nan
        if q >= 1:
            return self.high
        rank, seen = q * (self.count - 1), 0
        for value, count in self._ordered():
            seen += count
            if seen > rank:
                return min(max(value, self.low), self.high)
        return self.high

    def histogram(self, bins: int = HIST_BINS) -> dict[str, Any]:
        """Bins of the sketch (logarithmic in magnitude, a bin of exact zeros where there
        are some), their counts, and the quantiles p50, p90, p99 and max."""
        edges: list[float] = []
        counts: list[int] = []
        if self.negative:
            side_edges, side_counts = _log_bins(self.negative, bins)
            edges += [-e for e in reversed(side_edges)]
            counts += list(reversed(side_counts))
        if self.zeros or (self.negative and self.positive):
            if not edges:
                edges.append(0.0)
            elif edges[-1] != 0.0:
                edges.append(0.0)
                counts.append(0)
        if self.positive:
            side_edges, side_counts = _log_bins(self.positive, bins)
            if edges:
                counts.append(self.zeros)  # [0, lowest positive edge): the zeros only
                edges += side_edges
            else:
                edges = side_edges
            counts += side_counts
        elif self.zeros:
            edges.append(0.0)
            counts.append(self.zeros)
        if edges and self.count:  # the outer edges: the exact min and max
            edges[0], edges[-1] = self.low, self.high
        quantiles = {name: self.quantile(q) for name, q in QUANTILES.items()}
        quantiles["max"] = self.high if self.count else math.nan
        return {
            "edges": edges,
            "counts": counts,
            "quantiles": quantiles,
            "count": self.count,
            "nonfinite": self.nonfinite,
            "scale": "log",
        }


def _power(key: int, scale: float = 0.0) -> float:
    """exp(scale) * GAMMA ** key, an infinity past the float range (not an OverflowError)."""
    exponent = key * _LOG_GAMMA + scale
    return math.exp(exponent) if exponent < 709.78 else math.inf


def _represent(key: int) -> float:
    """The value a bucket stands for, 2 GAMMA**key / (GAMMA + 1): within SKETCH_ALPHA of
    every value in it."""
    return _power(key, math.log(2 / (_GAMMA + 1)))


def _log_bins(store: dict[int, int], bins: int) -> tuple[list[float], list[int]]:
    """Edges (ascending magnitudes) and counts of at most ``bins`` bins of whole buckets."""
    low, high = min(store), max(store)
    span = max(1, math.ceil((high - low + 1) / bins))
    count = math.ceil((high - low + 1) / span)
    edges = [_power(low - 1 + i * span) for i in range(count + 1)]
    counts = [0] * count
    for key, n in store.items():
        counts[(key - low) // span] += n
    return edges, counts


def is_count(value: Any) -> bool:
    """Whether ``value`` is a row count: an integer from 0 to 2**63 - 1."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


# ------------------------------------------------------------------ the hardest samples


def _order_key(loss: float) -> float:
    """Sort key of a row's loss, highest first; NaN counts as the highest."""
    return math.inf if loss != loss else loss


class TopRows:
    """The ``k`` rows of highest loss seen so far, with what describes each (``describe``);
    merging keeps the ``k`` highest of both."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.rows: list[dict[str, Any]] = []

    def add(self, losses, first_row: int, describe, kept=None) -> None:
        """Rows ``first_row + i`` with per-row ``losses`` (NumPy); ``describe(indices)``
        gives the description of the block's rows at those indices; ``kept``: which rows
        are samples (False: an ignored target). Among equal losses the first row wins."""
        if not self.k or not losses.size:
            return
        candidates = np.arange(len(losses)) if kept is None else np.flatnonzero(kept)
        if not candidates.size:
            return
        losses = losses[candidates]
        keyed = np.where(np.isnan(losses), np.inf, losses)
        if len(self.rows) == self.k:  # only rows above the lowest kept can enter
            above = np.flatnonzero(keyed > _order_key(self.rows[-1]["loss"]))
            keyed, losses, candidates = keyed[above], losses[above], candidates[above]
        if len(keyed) > self.k:
            kth = np.partition(keyed, len(keyed) - self.k)[len(keyed) - self.k]
            higher = np.flatnonzero(keyed > kth)
            ties = np.flatnonzero(keyed == kth)[: self.k - len(higher)]
            chosen = np.sort(np.concatenate([higher, ties]))
        else:
            chosen = np.arange(len(keyed))
        if not chosen.size:
            return
        rows = candidates[chosen]
        described = describe(rows)
        for i, (index, row) in enumerate(zip(chosen.tolist(), rows.tolist())):
            entry = {"row": first_row + row, "loss": float(losses[index])}
            entry.update(described[i])
            self.rows.append(entry)
        self._trim()

    def merge(self, rows: list[dict[str, Any]]) -> None:
        self.rows.extend(rows)
        self._trim()

    def _trim(self) -> None:
        # Highest first; equal losses by row number (the first seen first).
        self.rows.sort(key=lambda r: (-_order_key(r["loss"]), r["row"]))
        del self.rows[self.k :]


def describe_rows(spec, arrays: dict, indices) -> list[dict]:
    """What the top-K table says of each chosen row: the target, and the prediction (for a
    loss with a class probability, such as ce and nll, with class targets: the predicted
    class and p[target])."""
    predictions = arrays.get("predictions", arrays.get("input"))
    targets = arrays.get("targets", arrays.get("target"))
    rows = []
    for index in indices.tolist():
        entry: dict[str, Any] = {}
        if targets is not None and targets.ndim and len(targets) > index:
            entry["target"] = _short(targets[index])
        if predictions is not None and predictions.ndim and len(predictions) > index:
            row = np.asarray(predictions[index], dtype=np.float64)
            class_target = (
                spec.class_probability is not None
                and targets is not None
                and targets.dtype.kind in "iu"
                and row.ndim == 1
            )
            if class_target:
                target = int(targets[index])
                entry["predicted"] = int(np.argmax(row))
                if 0 <= target < row.size:
                    entry["p_target"] = float(spec.class_probability(row, target))
            else:
                entry["prediction"] = _short(row)
        rows.append(entry)
    return rows


def _short(value) -> Any:
    """A row for JSON and a table cell: a number, up to 8 values, or its argmax and max."""
    value = np.asarray(value)
    if value.ndim == 0:
        item = value.item()
        return int(item) if value.dtype.kind in "iu" else float(item)
    flat = value.reshape(-1)
    if flat.size <= 8:
        return [int(v) if value.dtype.kind in "iu" else float(v) for v in flat.tolist()]
    keyed = np.where(np.isnan(flat), -np.inf, flat) if flat.dtype.kind == "f" else flat
    at = int(np.argmax(keyed))
    return {"argmax": at, "max": float(flat[at]), "size": int(flat.size)}


def name_classes(rows: list[dict[str, Any]], names: list[str] | None) -> list[dict[str, Any]]:
    """Top rows with class indices (target, predicted) given by name where names are known."""
    if not names:
        return [dict(r) for r in rows]
    named = []
    for row in rows:
        row = dict(row)
        for key in ("target", "predicted"):
            value = row.get(key)
            if isinstance(value, int) and 0 <= value < len(names) and "p_target" in row:
                row[key] = names[value]
        named.append(row)
    return named


# ------------------------------------------------------------------ compare


class Comparison:
    """Two results on the same targets and their paired difference b - a."""

    def __init__(self, a, b, value: float, uncertainty: dict[str, Any]):
        self.a, self.b, self.value, self.uncertainty = a, b, value, uncertainty
        self.by_class: list[dict[str, Any]] | None = None
        self.gate: dict[str, Any] | None = None

    @property
    def warnings(self) -> list[str]:
        """Each side's warnings, said once where both give them, else marked (a) or (b)."""
        a, b = self.a.warnings, self.b.warnings
        shared = [w for w in a if w in b]
        return [
            *shared,
            *(f"(a) {w}" for w in a if w not in shared),
            *(f"(b) {w}" for w in b if w not in shared),
        ]

    def difference(self) -> dict[str, Any]:
        difference = {
            "value": self.value,
            "stderr": self.uncertainty.get("stderr"),
            "ci95": self.uncertainty.get("ci95"),
        }
        if "note" in self.uncertainty:
            difference["stderr_note"] = self.uncertainty["note"]
        difference["verdict"] = self.verdict()
        return difference

    def verdict(self) -> str:
        """What the interval says, in words (lower loss is better)."""
        if self.value != self.value:
            return "no verdict: the difference is NaN"
        if "ci95" not in self.uncertainty:
            if self.value == 0:
                return "the same loss"
            return f"b is {'lower (better)' if self.value < 0 else 'higher (worse)'}; no interval"
        low, high = self.uncertainty["ci95"]
        if high < 0:
            return "b is better (lower loss): the 95% interval is below 0"
        if low > 0:
            return "b is worse (higher loss): the 95% interval is above 0"
        return "no clear difference: the 95% interval contains 0"

    def to_dict(self) -> dict[str, Any]:
        from losscli.result import _plain

        out = {
            "a": self.a.to_dict(),
            "b": self.b.to_dict(),
            "difference": _plain(self.difference()),
        }
        if self.by_class is not None:
            out["by_class"] = _plain(self.by_class)
        out["gate"] = _plain(self.gate)
        return out


def class_differences(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per class: count, mean loss of a and of b, and b - a."""
    return [
        {
            "class": x["class"],
            "count": x["count"],
            "mean_a": x["mean"],
            "mean_b": y["mean"],
            "difference": y["mean"] - x["mean"],
        }
        for x, y in zip(a, b)
    ]


# ------------------------------------------------------------------ --group-by

# More values than this in a --group-by column is not a grouping (a float column, an id).
MAX_GROUPS = 10_000


class Groups:
    """Per value of the --group-by column: the sum of the per-row loss and the row count."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, values, losses) -> None:
        values = np.asarray(values).reshape(-1)
        if values.dtype.kind not in "fiu":
            values = np.asarray([str(v) for v in values.tolist()], dtype=object)
        unique, inverse = np.unique(values, return_inverse=True)  # NaNs: one value
        totals = np.bincount(inverse.reshape(-1), weights=losses, minlength=len(unique))
        numbers = np.bincount(inverse.reshape(-1), minlength=len(unique))
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        for value, total, count in zip(unique.tolist(), totals.tolist(), numbers.tolist()):
            label = group_label(value)  # values of one label: 1, 1.0, '1'
            sums[label] = sums.get(label, 0.0) + total
            counts[label] = counts.get(label, 0) + count
        self.merge(sums, counts)

    def merge(self, sums: dict[str, float], counts: dict[str, int]) -> None:
        for label, total in sums.items():
            self.sums[label] = self.sums.get(label, 0.0) + total
            self.counts[label] = self.counts.get(label, 0) + counts[label]
        if len(self.counts) > MAX_GROUPS:
            from losscli.errors import InputError

            raise InputError(
                f"--group-by: the column has more than {MAX_GROUPS} values; group by a column "
                "of labels (a split, a source, a class)"
            )


def group_label(value) -> str:
    """A --group-by value as text, the same whether a block of the column was read as
    numbers or as text: a number (or a text that is one) as the shortest float64 text,
    integral ones without '.0' (1, 1.0 and 1e0 are one group); an empty cell or NaN as '';
    other text as it is, without surrounding spaces."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = float(text)
        except ValueError:
            return text
    value = float(value)
    if value != value:
        return ""
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return str(int(value)) if value.is_integer() else repr(value)


def by_group(groups: Groups) -> list[dict[str, Any]]:
    """Per group, in the order of their labels (numbers by value): count, mean, share."""

    def order(label: str):
        try:
            return (0, float(label), label)
        except ValueError:
            return (1, 0.0, label)

    labels = sorted(groups.sums, key=order)
    sums = [groups.sums[label] for label in labels]
    return breakdown("group", labels, sums, [groups.counts[label] for label in labels])
