"""``--top K``: the K rows of highest loss, with their row numbers (from 0), targets and
predictions; a state keeps the top rows (at least ``TOP_IN_STATE``), and merging keeps the
highest of both."""

from __future__ import annotations

import math
from typing import Annotated, Any

import msgspec

from losscli.views import Count, Option, Part, View, shown

ORDER = 60

# The rows of highest loss a mergeable state keeps (more where --top asks for more).
TOP_IN_STATE = 10


class Argmax(Part):
    """A long prediction row as a top row shows it."""

    argmax: Count
    max: float | None
    size: Count


Cell = int | float | str | None | Annotated[list[float | None], msgspec.Meta(max_length=8)] | Argmax


class TopRow(Part, omit_defaults=True):
    """One of the --top rows: its row number, loss (null for NaN) and what describes it."""

    row: Count
    loss: float | None
    target: Cell | msgspec.UnsetType = msgspec.UNSET
    predicted: Cell | msgspec.UnsetType = msgspec.UNSET
    p_target: Cell | msgspec.UnsetType = msgspec.UNSET
    prediction: Cell | msgspec.UnsetType = msgspec.UNSET
    source: Cell | msgspec.UnsetType = msgspec.UNSET


class TopState(Part):
    """The --top rows kept: up to ``k``, highest loss first."""

    k: Count
    rows: list[TopRow]


def _order_key(loss: float) -> float:
    """Sort key of a row's loss, highest first; NaN counts as the highest."""
    return math.inf if loss != loss else loss


class TopRows:
    """The ``k`` rows of highest loss seen so far, with what describes each (``describe``);
    merging keeps the ``k`` highest of both."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.rows: list[dict[str, Any]] = []
        self.source: str | None = None  # the first input, as a state names each row's

    def add(self, losses, first_row: int, describe, kept=None) -> None:
        """Rows ``first_row + i`` with per-row ``losses`` (NumPy); ``describe(indices)``
        gives the description of the block's rows at those indices; ``kept``: which rows
        are samples (False: an ignored target). Among equal losses the first row wins."""
        if not self.k or not losses.size:
            return
        import numpy as np

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
    import numpy as np

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
    import numpy as np

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


class Top(View):
    name = "top"
    option = Option(
        "--top",
        int,
        "Also list the K rows of highest loss (row from 0, target, prediction).",
        metavar="K",
        low=1,
        high=10_000,
        merge=True,
    )
    example = "losscli ce sample_data/logits.csv sample_data/labels.csv --top 3"
    State = TopState
    kept = "always"
    missing = "these states keep no top rows"

    def start(self, setup):
        k = max(setup.asked or 0, TOP_IN_STATE) if setup.emit_state else (setup.asked or 0)
        if not k:
            return None
        top = TopRows(k)
        top.source = setup.source
        return top

    def add(self, part: TopRows, block) -> None:
        spec = block.spec
        arrays = {"predictions": block.predictions}
        if block.targets is not None:
            arrays["targets"] = block.targets

        def describe(indices) -> list[dict]:
            if not spec.chunkable:
                return [{} for _ in indices]
            return describe_rows(spec, arrays, indices)

        part.add(block.rows, block.first_row, describe, block.row_mask)

    def dump(self, part: TopRows) -> dict[str, Any]:
        from losscli.values import plain

        rows = []
        for row in part.rows:
            row = plain(row)
            if part.source is not None and "source" not in row:
                row["source"] = part.source
            rows.append(row)
        return {"k": part.k, "rows": rows}

    def load(self, path, data: TopState, core) -> TopRows:
        from losscli.errors import InputError

        top = msgspec.to_builtins(data)
        if len(top["rows"]) > top["k"]:
            raise InputError(f"{path}: top.rows: {len(top['rows'])} rows, more than k {top['k']}")
        for row in top["rows"]:
            row["loss"] = math.nan if row["loss"] is None else row["loss"]
        kept = TopRows(top["k"])
        kept.rows = top["rows"]
        return kept

    def check(self, path, part: TopRows, core) -> None:
        """k as --top allows it; each row's source a name, its class target and predicted
        class among the classes, its p[target] a probability."""
        from losscli.errors import InputError
        from losscli.registry import get_spec
        from losscli.state_checks import classes

        high = self.option.high
        if part.k > high:
            raise InputError(f"{path}: top.k: {part.k} is more than --top allows ({high})")
        n = classes(get_spec(core["loss"]), core)
        one_axis = len(core["inputs"].get("targets", {}).get("shape", [])) == 1
        for i, row in enumerate(part.rows):
            field = f"top.rows[{i}]"
            if "source" in row and not isinstance(row["source"], str):
                raise InputError(f"{path}: {field}.source: {shown(row['source'])} is not the "
                                 "name of a source")  # fmt: skip
            p = row.get("p_target")
            if p is not None and not (isinstance(p, float) and (p != p or 0.0 <= p <= 1.0)):
                raise InputError(f"{path}: {field}.p_target: {shown(p)} is not a probability")
            for key in ("target", "predicted") if n is not None and one_axis else ():
                value = row.get(key)
                if key in row and not (type(value) is int and 0 <= value < n):
                    raise InputError(f"{path}: {field}.{key}: {shown(value)} is not a class of "
                                     f"{n}")  # fmt: skip

    def combine(self, parts: list[TopRows]) -> TopRows:
        top = TopRows(min(p.k for p in parts))
        for part in parts:
            top.merge(part.rows)
        return top

    def shift_rows(self, part: TopRows, offset: int) -> None:
        for row in part.rows:
            row["row"] += offset

    def result(self, part: TopRows, finish) -> list[dict[str, Any]]:
        if finish.asked > part.k:
            finish.warnings.append(
                f"--top {finish.asked}: the states keep the top {part.k} rows (run them with "
                f"--top {finish.asked} to keep more); showing {part.k}"
            )
        return name_classes(part.rows[: finish.asked], finish.class_names)

    def tables(self, shown) -> list:
        return [top_table(shown)]

    def report(self, result):
        from losscli.report.html import Section, cell, table

        rows = result.get("top")
        if rows is None:
            return None
        names = ("source", "target", "predicted", "p_target", "prediction")
        keys = [k for k in names if any(k in r for r in rows)]
        columns = ["row", "loss", *({"p_target": "p[target]"}.get(k, k) for k in keys)]
        shown = ("row", "loss", *keys)
        cells = [
            [cell(row[k], f"top.{i}.{k}") if k in row else "\u2013" for k in shown]
            for i, row in enumerate(rows)
        ]
        numeric = tuple(i for i, k in enumerate(shown) if k != "source")
        body = table(columns, cells, numeric) + '<p class="note">Rows counted from 0.</p>'
        return Section("top", f"The {len(rows)} rows of highest loss", body, wide=True)


def top_table(rows: list[dict]):
    """The top rows as a table."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from losscli.output import escape
    from losscli.values import format_number

    table = Table(
        title=f"top {len(rows)} rows by loss", caption="rows counted from 0", box=box.SIMPLE
    )
    names = ("source", "target", "predicted", "p_target", "prediction")
    keys = [k for k in names if any(k in r for r in rows)]
    shown = {"p_target": "p[target]"}
    for column in ("row", "loss", *keys):
        justify = "left" if column == "source" else "right"
        table.add_column(shown.get(column, column), no_wrap=True, justify=justify)
    for row in rows:
        cells = [str(row["row"]), format_number(row["loss"])]
        cells += [_top_cell(row.get(k)) for k in keys]
        table.add_row(*(Text(escape(c)) for c in cells))
    return table


def _top_cell(value) -> str:
    from losscli.values import format_number

    if value is None:
        return "-"
    if isinstance(value, dict):
        return f"argmax {value['argmax']} ({format_number(value['max'], 4)}) of {value['size']}"
    if isinstance(value, list):
        return "[" + ", ".join(format_number(v, 4) for v in value) + "]"
    if isinstance(value, float):
        return format_number(value)
    return str(value)


VIEW = Top()
