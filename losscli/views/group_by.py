"""``--group-by COL``: per value of a column of the table (single-file mode), the count,
mean loss and share of the total. The pipeline reads the column beside the inputs; a block
gives each row's value."""

from __future__ import annotations

import math
from typing import Any

from losscli.views import Option, Part, View, breakdown, refuse_unequal

ORDER = 40

# More values than this in a --group-by column is not a grouping (a float column, an id).
MAX_GROUPS = 10_000


class GroupsState(Part):
    """The --group-by part: the column, and per value the sum and row count."""

    column: str
    sums: dict[str, Any]
    counts: dict[str, Any]


class Groups:
    """Per value of the --group-by column: the sum of the per-row loss and the row count."""

    def __init__(self, column: str) -> None:
        self.column = column
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, values, losses) -> None:
        import numpy as np

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


class GroupBy(View):
    name = "by_group"
    state_key = "groups"
    option = Option(
        "--group-by",
        str,
        "Also break the loss down by the values of column COL of the table "
        "(single-file mode: --pred-cols and --target-cols).",
        metavar="COL",
    )
    example = (
        "losscli ce sample_data/eval.csv --pred-cols cat,dog,bird --target-cols label "
        "--group-by split"
    )
    State = GroupsState
    noun = "groups"

    def start(self, setup):
        return Groups(setup.asked) if setup.asked is not None else None

    def add(self, part: Groups, block) -> None:
        if block.groups is None:
            return
        if block.row_mask is None:
            part.add(block.groups, block.rows)
        else:
            part.add(block.groups[block.row_mask], block.rows[block.row_mask])

    def dump(self, part: Groups) -> dict[str, Any]:
        from losscli.views import number

        sums = {k: number(v) for k, v in part.sums.items()}
        return {"column": part.column, "sums": sums, "counts": dict(part.counts)}

    def load(self, path, data: GroupsState, core) -> Groups:
        from losscli.errors import InputError
        from losscli.state import decode, field_name
        from losscli.views import Count, Number, real

        if set(data.sums) != set(data.counts):
            raise InputError(f"{path}: groups: sums and counts of other groups")
        groups = Groups(data.column)
        for k, v in data.sums.items():
            name = field_name("groups.sums", k)
            groups.sums[k] = real(path, name, decode(path, v, Number, name))
        for k, v in data.counts.items():
            groups.counts[k] = decode(path, v, Count, field_name("groups.counts", k))
        return groups

    def compatible(self, paths, parts) -> None:
        if all(p is not None for p in parts):
            refuse_unequal(paths, "--group-by column", [p.column for p in parts])

    def combine(self, parts: list[Groups]) -> Groups:
        merged = Groups(parts[0].column)
        for part in parts:
            merged.merge(part.sums, part.counts)
        return merged

    def result(self, part: Groups, finish) -> dict[str, Any]:
        return {"column": part.column, "rows": by_group(part)}

    def to_json(self, shown) -> dict[str, Any]:
        return {"by_group": shown["rows"], "group_by": shown["column"]}

    def tables(self, shown) -> list:
        from losscli.render import breakdown_table

        return [breakdown_table(f"by {shown['column']}", "group", "rows", shown["rows"])]

    def report(self, result):
        from losscli.report.html import Section, breakdown

        if result.get("by_group") is None:
            return None
        column = result["group_by"]
        body = breakdown(result["by_group"], "group", "by_group", column)
        return Section("by-group", f"By {column}", body)


VIEW = GroupBy()
