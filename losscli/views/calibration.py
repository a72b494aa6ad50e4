"""``--calibration BINS``: how far a classifier's confidence is from its accuracy, over BINS
equal-width bins of confidence on [0, 1] (the expected calibration error, ECE, and a
reliability table).

For ``ce`` and ``nll`` a row's confidence is its highest predicted probability (the softmax
of the logits, the exp of the log-probabilities; with --from, of the converted predictions)
and the row is right when that class is its target; rows with an ignored target are left
out. For ``bce`` and ``bce-logits`` each element is a prediction: its confidence is
max(p, 1 - p) (p = sigmoid(x) for bce-logits) and it is right when the rounded prediction
(p > 0.5: 1, else 0) equals its target; elements whose target is not 0 or 1, and predictions
that are not finite, are left out and counted in a warning.

A bin keeps its count, its count of right predictions and the sum of its confidences, so
blocks, shards, states and Dask parts add up to one run over every row.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import msgspec

from losscli.views import Count, Number, Option, Part, View, fsum, number, real, refuse_unequal

ORDER = 80

CLASS_LOSSES = ("ce", "nll")  # a distribution over classes per row
BINARY_LOSSES = ("bce", "bce-logits")  # a probability (or logit) per element
BAR = 20


class CalibrationState(Part):
    """Per bin of confidence: the count, the count of right predictions and the sum of the
    confidences; ``left_out``: elements left out (a target not 0 or 1, not finite)."""

    bins: Annotated[int, msgspec.Meta(ge=2, le=1000)]
    count: list[Count]
    correct: list[Count]
    confidence_sum: list[Number]
    left_out: Count = 0


class Bins:
    """The accumulator: per bin, count, right predictions and the sum of confidences."""

    def __init__(self, bins: int) -> None:
        self.bins = bins
        self.count = [0] * bins
        self.correct = [0] * bins
        self.confidence_sum = [0.0] * bins
        self.left_out = 0

    def add(self, confidence, right) -> None:
        """Predictions' confidences in [0, 1] and whether each is right (NumPy)."""
        import numpy as np

        index = np.minimum((confidence * self.bins).astype(np.int64), self.bins - 1)
        index = np.maximum(index, 0)
        counts = np.bincount(index, minlength=self.bins)
        rights = np.bincount(index, weights=right.astype(np.float64), minlength=self.bins)
        sums = np.bincount(index, weights=confidence, minlength=self.bins)
        for i in np.flatnonzero(counts).tolist():
            self.count[i] += int(counts[i])
            self.correct[i] += int(round(rights[i]))
            self.confidence_sum[i] += float(sums[i])


def confidences(spec, predictions, targets, mask):
    """(confidence, right, left out) of a block's predictions, as the module says."""
    import numpy as np

    predictions = np.asarray(predictions, dtype=np.float64)
    targets = np.asarray(targets)
    if spec.name in CLASS_LOSSES:
        rows = predictions.reshape(1, -1) if predictions.ndim == 1 else predictions
        rows = np.moveaxis(rows, 1, -1).reshape(-1, rows.shape[1])
        labels = targets.reshape(-1)
        if mask is not None:
            rows, labels = rows[mask], labels[mask]
        top = rows.max(axis=1)
        with np.errstate(over="ignore", invalid="ignore"):
            if spec.predictions_are == "log-probs":
                confidence = np.exp(top)
            else:  # logits: the softmax's largest probability
                confidence = 1.0 / np.exp(rows - top[:, None]).sum(axis=1)
        right = rows.argmax(axis=1) == labels
    else:
        p = predictions.reshape(-1)
        if spec.predictions_are == "logits":
            with np.errstate(over="ignore"):
                p = 1.0 / (1.0 + np.exp(-p))
        labels = targets.reshape(-1)
        binary = (labels == 0) | (labels == 1)
        confidence = np.maximum(p, 1.0 - p)
        right = (p > 0.5) == (labels == 1)
        confidence, right = confidence[binary], right[binary]
    finite = np.isfinite(confidence)
    left_out = int(confidence.size - finite.sum())
    if spec.name in BINARY_LOSSES:
        left_out += int(binary.size - binary.sum())
    return confidence[finite], right[finite], left_out


def reliability(part: Bins) -> dict[str, Any]:
    """The ECE and each bin's bounds, count, mean confidence and accuracy."""
    total = sum(part.count)
    bins, gaps = [], []
    for i in range(part.bins):
        count = part.count[i]
        confidence = part.confidence_sum[i] / count if count else None
        accuracy = part.correct[i] / count if count else None
        if count:
            gaps.append(count / total * abs(accuracy - confidence))
        bins.append({"lower": i / part.bins, "upper": (i + 1) / part.bins, "count": count,
                     "confidence": confidence, "accuracy": accuracy})  # fmt: skip
    return {"ece": fsum(gaps) if total else math.nan, "bins": bins}


class Calibration(View):
    name = "calibration"
    option = Option(
        "--calibration",
        int,
        "Also report calibration: the expected calibration error (ECE) and the accuracy "
        "and mean confidence of BINS equal-width bins of confidence.",
        metavar="BINS",
        low=2,
        high=1000,
        losses=lambda spec: spec.name in CLASS_LOSSES + BINARY_LOSSES,
        compare=True,
        merge=True,
    )
    example = "losscli ce sample_data/logits.csv sample_data/labels.csv --calibration 10"
    State = CalibrationState
    noun = "calibration"
    missing = "these states have no calibration (run them with --calibration BINS)"

    def start(self, setup):
        if setup.asked is None:
            return None
        if setup.spec.name in CLASS_LOSSES and setup.classes is None:
            from losscli.errors import OptionError

            raise OptionError(
                f"--calibration needs class-index targets for {setup.spec.name}; the targets "
                f"({setup.targets_source}) are {setup.targets_kind or 'not class indices'}"
            )
        return Bins(setup.asked)

    def add(self, part: Bins, block) -> None:
        confidence, right, left_out = confidences(
            block.spec, block.predictions, block.targets, block.element_mask
        )
        part.add(confidence, right)
        part.left_out += left_out

    def dump(self, part: Bins) -> dict[str, Any]:
        return {
            "bins": part.bins,
            "count": list(part.count),
            "correct": list(part.correct),
            "confidence_sum": [number(v) for v in part.confidence_sum],
            "left_out": part.left_out,
        }

    def load(self, path, data: CalibrationState, core) -> Bins:
        from losscli.errors import InputError

        part = Bins(data.bins)
        lists = {"count": data.count, "correct": data.correct,
                 "confidence_sum": data.confidence_sum}  # fmt: skip
        for key, values in lists.items():
            if len(values) != data.bins:
                raise InputError(f"{path}: calibration.{key}: {len(values)} values of "
                                 f"{data.bins} bins")  # fmt: skip
        for i, (count, correct, total) in enumerate(zip(*lists.values())):
            field = f"calibration.confidence_sum[{i}]"
            total = real(path, field, total)
            if correct > count:
                raise InputError(f"{path}: calibration.correct[{i}]: more than its count")
            if not 0 <= total <= count * (1 + 1e-9):
                raise InputError(f"{path}: {field}: {total!r} is not a sum of {count} "
                                 "confidences")  # fmt: skip
            part.count[i], part.correct[i], part.confidence_sum[i] = count, correct, total
        part.left_out = data.left_out
        return part

    def check(self, path, part: Bins, core) -> None:
        """Bins that hold at most the state's samples, each mean confidence in its bin."""
        from losscli.errors import InputError
        from losscli.state_checks import samples

        most = core["count"] if samples(core) is None else samples(core)
        if sum(part.count) > most:
            raise InputError(f"{path}: calibration.count: {sum(part.count)} predictions in "
                             f"all, where the state has {most} samples")  # fmt: skip
        for i, (count, total) in enumerate(zip(part.count, part.confidence_sum)):
            low, high = i / part.bins, 1.0 if i == part.bins - 1 else (i + 1) / part.bins
            slack = 1e-6 * count + 1e-9  # float32 confidences, binned before the sum
            if count and not low * count - slack <= total <= high * count + slack:
                mean = total / count
                raise InputError(f"{path}: calibration.confidence_sum[{i}]: a mean confidence "
                                 f"of {mean!r}, outside its bin [{low!r}, {high!r}]")  # fmt: skip

    def compatible(self, paths, parts) -> None:
        present = [(path, p.bins) for path, p in zip(paths, parts) if p is not None]
        if present:
            refuse_unequal([p for p, _ in present], "--calibration bins", [b for _, b in present])

    def combine(self, parts: list[Bins]) -> Bins:
        merged = Bins(parts[0].bins)
        for i in range(merged.bins):
            merged.count[i] = sum(p.count[i] for p in parts)
            merged.correct[i] = sum(p.correct[i] for p in parts)
            merged.confidence_sum[i] = fsum(p.confidence_sum[i] for p in parts)
        merged.left_out = sum(p.left_out for p in parts)
        return merged

    def result(self, part: Bins, finish) -> dict[str, Any]:
        from losscli.errors import OptionError

        if finish.asked is not None and finish.asked != part.bins:
            raise OptionError(
                f"--calibration {finish.asked}: the states have {part.bins} bins (merge them "
                f"with --calibration {part.bins}, or rerun them)"
            )
        if part.left_out:
            finish.warnings.append(
                f"--calibration: {part.left_out} elements left out (a target other than 0 "
                "or 1, or a prediction that is not finite)"
            )
        return reliability(part)

    def tables(self, shown) -> list:
        return [calibration_table(shown)]

    def report(self, result):
        from losscli.report.html import Section

        shown = result.get("calibration")
        if shown is None:
            return None
        return Section("calibration", "Calibration", calibration_report(shown))

    def compare(self, a, b) -> dict[str, Any]:
        return {"ece_a": a["ece"], "ece_b": b["ece"], "difference": b["ece"] - a["ece"]}

    def compare_tables(self, compared) -> list:
        from rich.text import Text

        from losscli.values import format_number

        return [
            Text(
                f"calibration (ECE): a {format_number(compared['ece_a'])}, b "
                f"{format_number(compared['ece_b'])}, b - a "
                f"{format_number(compared['difference'])}"
            )
        ]

    def compare_report(self, comparison):
        from losscli.report import charts
        from losscli.report.html import Section, fields, figure, number

        compared = comparison.get("calibration")
        if compared is None:
            return None
        rows = [
            ("ECE a", number(compared["ece_a"], "calibration.ece_a")),
            ("ECE b", number(compared["ece_b"], "calibration.ece_b")),
            ("b \u2212 a", number(compared["difference"], "calibration.difference")),
        ]
        series = [(side, comparison[side]["calibration"]["bins"]) for side in ("a", "b")]
        caption = "Accuracy against mean confidence per bin, for a and for b; dashed: perfect."
        body = fields(rows) + figure(charts.reliability(series), caption)
        return Section("calibration", "Calibration (ECE)", body)


def calibration_report(shown: dict[str, Any]) -> str:
    """The report's calibration: the ECE, the reliability diagram and the bins' table."""
    from losscli.report import charts
    from losscli.report.html import figure, note, number, table

    counted = sum(row["count"] for row in shown["bins"])
    if not counted:
        return note("No predictions to calibrate.")
    ece = number(shown["ece"], "calibration.ece")
    ece = f'<p class="lead">ECE {ece} over {counted} predictions</p>'
    svg = charts.reliability([("accuracy", shown["bins"])])
    caption = (
        "Accuracy against mean confidence in each bin of confidence (bars: the bins' "
        "accuracy; dashed: perfect calibration); below, the predictions per bin."
    )
    fields = ("lower", "upper", "count", "confidence", "accuracy")
    rows = [
        [number(row[k], f"calibration.bins.{i}.{k}") for k in fields]
        for i, row in enumerate(shown["bins"])
    ]
    bins = table(["from", "to", "count", "confidence", "accuracy"], rows, (0, 1, 2, 3, 4))
    return ece + figure(svg, caption) + f"<details><summary>Bins</summary>{bins}</details>"


def _bar(accuracy: float, confidence: float) -> str:
    """Accuracy as '#' out of BAR, the mean confidence marked '|' (where they meet, '+')."""
    filled = round(BAR * accuracy)
    mark = min(round(BAR * confidence), BAR - 1)
    cells = ["#" if i < filled else " " for i in range(BAR)]
    cells[mark] = "+" if cells[mark] == "#" else "|"
    return "".join(cells).rstrip()


def calibration_table(shown: dict[str, Any]):
    """The reliability table: each bin with a bar of its accuracy against its mean
    confidence, and the ECE."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from losscli.values import format_number

    table = Table(title="calibration: accuracy (#) vs mean confidence (|)", box=box.SIMPLE)
    for column in ("from", "to", "count", "confidence", "accuracy", ""):
        table.add_column(column, no_wrap=True, justify="left" if not column else "right")
    for row in shown["bins"]:
        empty = row["count"] == 0
        table.add_row(
            Text(format_number(row["lower"], 4)),
            Text(format_number(row["upper"], 4)),
            Text(str(row["count"])),
            Text("-" if empty else format_number(row["confidence"], 4)),
            Text("-" if empty else format_number(row["accuracy"], 4)),
            Text("" if empty else _bar(row["accuracy"], row["confidence"])),
        )
    counted = sum(row["count"] for row in shown["bins"])
    note = f"ECE {format_number(shown['ece'])} over {counted} predictions"
    return Group(table, Text(note if counted else "no predictions to calibrate"))


VIEW = Calibration()
