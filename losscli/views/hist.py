"""``--hist``: a histogram and the quantiles p50, p90, p99 and max of the per-row loss,
from a mergeable sketch (a DDSketch: a quantile of merged sketches is the quantile of one run
over every row), drawn in the terminal."""

from __future__ import annotations

import math
from typing import Any

from losscli.views import Count, Option, Part, View, is_count

ORDER = 50

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
        import numpy as np

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


class HistState(Part):
    """The --hist sketch of the per-sample loss (``Sketch``)."""

    alpha: float
    count: Count
    zeros: Count
    nonfinite: Count
    min: float | None
    max: float | None
    positive: dict[str, Any]
    negative: dict[str, Any]


class Hist(View):
    name = "hist"
    option = Option(
        "--hist",
        bool,
        "Also draw a histogram and quantiles of the per-row loss.",
        merge=True,
    )
    example = "losscli mse sample_data/y_pred.csv sample_data/y_true.csv --hist"
    State = HistState
    kept = "always"
    missing = "these states have no histogram (written before --hist)"

    def start(self, setup):
        return Sketch() if setup.asked or setup.emit_state else None

    def add(self, part: Sketch, block) -> None:
        part.add(block.rows if block.row_mask is None else block.rows[block.row_mask])

    def dump(self, part: Sketch) -> dict[str, Any]:
        return part.to_dict()

    def load(self, path, data: HistState, core) -> Sketch:
        import msgspec

        from losscli.errors import InputError
        from losscli.state import decode, field_name

        hist = msgspec.to_builtins(data)
        for side in ("positive", "negative"):
            for key, count in hist[side].items():
                decode(path, count, Count, field_name(f"hist.{side}", key))
        try:
            return Sketch.from_dict(hist, f"{path}: hist")
        except ValueError as error:
            raise InputError(str(error)) from None

    def combine(self, parts: list[Sketch]) -> Sketch:
        merged = Sketch()
        for part in parts:
            merged.merge(part)
        return merged

    def result(self, part: Sketch, finish) -> dict[str, Any]:
        return part.histogram()

    def tables(self, shown) -> list:
        return [hist_table(shown)]

    def report(self, result):
        from losscli.report import charts
        from losscli.report.html import Section, figure, note, number, table

        hist = result.get("hist")
        if hist is None:
            return None
        if not hist["count"]:
            return Section("hist", "Distribution of the per-row loss",
                           note("No rows with a finite loss."))  # fmt: skip
        quantiles = hist["quantiles"]
        marks = ", ".join(
            f"{name} {number(quantiles[name], f'hist.quantiles.{name}')}" for name in quantiles
        )
        caption = f"{number(hist['count'], 'hist.count')} rows; {marks}."
        if hist["nonfinite"]:
            caption += (
                f" {number(hist['nonfinite'], 'hist.nonfinite')} rows of NaN or inf loss are "
                "not in the bins."
            )
        edges, counts = hist["edges"], hist["counts"]
        svg = charts.histogram(edges, counts, quantiles)
        rows = [
            [number(edges[i], f"hist.edges.{i}"), number(edges[i + 1], f"hist.edges.{i + 1}"),
             number(count, f"hist.counts.{i}")]
            for i, count in enumerate(counts)
        ]  # fmt: skip
        bins = table(["from", "to", "rows"], rows, (0, 1, 2))
        body = figure(svg, caption) + f"<details><summary>Bins</summary>{bins}</details>"
        return Section("hist", "Distribution of the per-row loss", body)


HIST_BAR = 30


def hist_table(hist: dict):
    """The histogram of the per-row loss as a table of bins with bars, quantiles below."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from losscli.values import format_number

    table = Table(title="per-row loss: histogram", box=box.SIMPLE)
    for column in ("from", "to", "rows", ""):
        table.add_column(column, no_wrap=True, justify="left" if not column else "right")
    counts, edges = hist["counts"], hist["edges"]
    most = max(counts, default=0)
    for low, high, count in zip(edges, edges[1:], counts):
        bar = "#" * (round(HIST_BAR * count / most) if most else 0)
        if count and not bar:
            bar = "."
        table.add_row(
            Text(format_number(low, 4)), Text(format_number(high, 4)), Text(str(count)), Text(bar)
        )
    quantiles = hist["quantiles"]
    line = "  ".join(f"{name} {format_number(quantiles[name], 4)}" for name in quantiles)
    notes = [Text(f"{line}  ({hist['count']} rows)")]
    if hist.get("nonfinite"):
        notes.append(Text(f"{hist['nonfinite']} rows of NaN or inf loss are not in the bins"))
    if hist["count"] == 0:
        notes = [Text("no rows with a finite loss")]
    return Group(table, *notes)


VIEW = Hist()
