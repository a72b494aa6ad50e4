"""``--by-class``: per target class, the count, mean loss and share of the total; in
``compare``, each class's mean of a and of b and their difference."""

from __future__ import annotations

from typing import Any

from losscli.views import Count, Number, Option, Part, View, breakdown, fsum, real, refuse_unequal

ORDER = 30


class PerClass(Part):
    """Per target class: the sum of the loss and the count of (not ignored) targets."""

    sums: list[Number]
    counts: list[Count]


class ClassSums:
    """Per class: the float64 sum of the loss and the count of counted targets."""

    def __init__(self, sums: list[float], counts: list[int]) -> None:
        import numpy as np

        self.sums = np.asarray(sums, dtype=np.float64)
        self.counts = np.asarray(counts, dtype=np.int64)


def by_class(sums, counts, names: list[str] | None) -> list[dict[str, Any]]:
    """Per target class (by name where known): count, mean loss and share of the total."""
    labels = [names[i] if names and i < len(names) else i for i in range(len(sums))]
    return breakdown("class", labels, sums, counts)


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


class ByClass(View):
    name = "by_class"
    state_key = "per_class"
    option = Option(
        "--by-class",
        bool,
        "Also break the loss down by target class (count, mean, share).",
        compare=True,
        merge=True,
    )
    example = "losscli ce sample_data/logits.csv sample_data/labels.csv --by-class"
    State = PerClass
    kept = "always"
    missing = "these states have no per-class sums (no class targets)"

    def start(self, setup):
        if setup.asked and setup.classes is None:
            from losscli.errors import OptionError

            raise OptionError(
                f"--by-class needs class-index targets; {setup.spec.name}'s targets "
                f"({setup.targets_source}) are {setup.targets_kind or 'not class indices'}"
            )
        if (setup.asked or setup.emit_state) and setup.classes:
            return ClassSums([0.0] * setup.classes, [0] * setup.classes)
        return None

    def add(self, part: ClassSums, block) -> None:
        import numpy as np

        targets, classes = block.targets, len(part.sums)
        if targets is None or block.elements.size != np.size(targets):
            return
        labels = np.asarray(targets).reshape(-1)
        ignore_index = block.options.get("ignore_index")
        kept = (labels >= 0) & (labels < classes) & (labels != ignore_index)
        part.sums += np.bincount(labels[kept], block.elements[kept], minlength=classes)
        part.counts += np.bincount(labels[kept], minlength=classes)

    def dump(self, part: ClassSums) -> dict[str, Any]:
        from losscli.views import number

        return {"sums": [number(v) for v in part.sums.tolist()], "counts": part.counts.tolist()}

    def load(self, path, data: PerClass, core) -> ClassSums:
        from losscli.errors import InputError
        from losscli.registry import INDEX, get_spec

        spec = get_spec(core["loss"])
        if not any(i.role == INDEX for i in spec.inputs):
            raise InputError(f"{path}: per_class: {spec.name} has no class targets")
        if len(data.sums) != len(data.counts):
            raise InputError(f"{path}: per_class: {len(data.sums)} sums and "
                             f"{len(data.counts)} counts")  # fmt: skip
        names = core.get("class_names")
        if names is not None and len(names) != len(data.sums):
            raise InputError(f"{path}: class_names: {len(names)} names of "
                             f"{len(data.sums)} classes")  # fmt: skip
        sums = [real(path, f"per_class.sums[{i}]", v) for i, v in enumerate(data.sums)]
        return ClassSums(sums, list(data.counts))

    def check(self, path, part: ClassSums, core) -> None:
        """One count per class of the predictions; counted targets are the samples."""
        from losscli.errors import InputError
        from losscli.registry import get_spec
        from losscli.state_checks import classes, samples

        n = classes(get_spec(core["loss"]), core)
        if n is not None and len(part.counts) != n:
            raise InputError(f"{path}: per_class: {len(part.counts)} classes, where the "
                             f"predictions have {n}")  # fmt: skip
        total = int(part.counts.sum())
        kept = samples(core) if n is not None else None  # ctc's targets are no samples
        if total > core["count"] or (kept is not None and total != kept):
            most = core["count"] if kept is None else kept
            raise InputError(f"{path}: per_class.counts: {total} targets in all, where the "
                             f"state has {most} samples")  # fmt: skip

    def compatible(self, paths, parts) -> None:
        refuse_unequal(paths, "classes", [None if p is None else len(p.sums) for p in parts])

    def combine(self, parts: list[ClassSums]) -> ClassSums:
        sums = [fsum(c) for c in zip(*(p.sums.tolist() for p in parts))]
        counts = [sum(c) for c in zip(*(p.counts.tolist() for p in parts))]
        return ClassSums(sums, counts)

    def result(self, part: ClassSums, finish) -> list[dict[str, Any]]:
        return by_class(part.sums.tolist(), part.counts.tolist(), finish.class_names)

    def tables(self, shown) -> list:
        from losscli.render import breakdown_table

        return [breakdown_table("by class", "class", "count", shown)]

    def report(self, result):
        from losscli.report.html import Section, breakdown

        if result.get("by_class") is None:
            return None
        return Section("by-class", "By class", breakdown(result["by_class"], "class",
                                                        "by_class", "class"))  # fmt: skip

    def compare(self, a, b) -> list[dict[str, Any]]:
        return class_differences(a, b)

    def compare_tables(self, compared) -> list:
        from rich import box
        from rich.table import Table
        from rich.text import Text

        from losscli.output import escape
        from losscli.values import format_number

        table = Table(title="by class: b - a", box=box.SIMPLE_HEAVY)
        for column in ("class", "count", "mean a", "mean b", "b - a"):
            table.add_column(column, no_wrap=True, justify="left" if column == "class" else "right")
        for row in compared:
            table.add_row(
                Text(escape(str(row["class"]))),
                Text(str(row["count"])),
                *(Text(format_number(row[k])) for k in ("mean_a", "mean_b", "difference")),
            )
        return [table]

    def compare_report(self, comparison):
        from losscli.report import charts
        from losscli.report.html import Section, figure, number, table, text

        rows = comparison.get("by_class")
        if rows is None:
            return None
        shown = rows[: charts.MAX_BARS]
        svg = charts.class_differences([r["class"] for r in shown],
                                       [r["difference"] for r in shown])  # fmt: skip
        caption = "Mean loss of b minus that of a, per class (below 0: b is better)."
        if len(rows) > len(shown):
            caption += f" The first {len(shown)} of {len(rows)} classes."
        cells = [
            [text(row["class"]), number(row["count"], f"by_class.{i}.count"),
             *(number(row[k], f"by_class.{i}.{k}") for k in ("mean_a", "mean_b", "difference"))]
            for i, row in enumerate(rows)
        ]  # fmt: skip
        columns = ["class", "count", "mean a", "mean b", "b \u2212 a"]
        body = figure(svg, caption) + table(columns, cells, (1, 2, 3, 4))
        return Section("by-class", "By class: b \u2212 a", body)


VIEW = ByClass()
