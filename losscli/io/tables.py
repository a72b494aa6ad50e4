"""Tables with named, typed columns (Parquet, Arrow IPC, JSON Lines), read as Arrow record
batches: every numeric column, or the chosen ones; a column of lists of numbers is a group
of columns (a row's list is its values).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from losscli.errors import InputError
from losscli.io.columns import resolve_columns
from losscli.io.common import Blocks, InputArray, Request, block_rows, narrow
from losscli.io.text import fill_from_arrow

# A batch of rows: {column index: Arrow array}, and the line of each row where the format
# has lines (JSON Lines), else None.
Batch = tuple[dict[int, object], Callable[[int], int] | None]


@dataclass
class Table:
    """What a format's reader says about a table before its rows are read.

    ``batches(wanted, unique, rows)`` yields a Batch for each block of at most ``rows``
    rows (``rows`` None: as few batches as the format makes) holding the columns
    ``wanted``; ``unique`` says that the names of those columns are unique. ``rows`` is the
    table's row count where known; ``index_columns`` are pandas' stored row index.
    Columns of lists are read where they are chosen, and without a choice only where
    ``lists`` says (JSON Lines: a list is how a row holds its C values).
    """

    label: str
    format: str
    schema: object
    batches: Callable[[list[int], bool, int | None], Iterator[Batch]]
    rows: int | None = None
    index_columns: frozenset[int] = frozenset()
    lists: bool = False


def kind_of(pa, arrow_type) -> str:
    """number, bool, string, list (of numbers) or other."""
    if (
        pa.types.is_integer(arrow_type)
        or pa.types.is_floating(arrow_type)
        or pa.types.is_decimal(arrow_type)
    ):
        return "number"
    if pa.types.is_boolean(arrow_type):
        return "bool"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "string"
    if pa.types.is_dictionary(arrow_type) and kind_of(pa, arrow_type.value_type) == "string":
        return "string"
    if (
        pa.types.is_list(arrow_type)
        or pa.types.is_large_list(arrow_type)
        or pa.types.is_fixed_size_list(arrow_type)
    ) and kind_of(pa, arrow_type.value_type) in ("number", "bool"):
        return "list"
    return "other"


def table_blocks(table: Table, requests: list[Request], blocks: Blocks | None):
    """One InputArray per request for each batch of rows of ``table``."""
    import pyarrow as pa

    label, schema = table.label, table.schema
    names = list(schema.names)
    index_columns = table.index_columns
    readable = ("number", "bool", "list") if table.lists else ("number", "bool")
    selections = []
    for request in requests:
        if request.columns is not None:
            chosen = resolve_columns(request.columns, names, len(names), label)
        else:
            chosen = [
                i
                for i, f in enumerate(schema)
                if kind_of(pa, f.type) in readable and i not in index_columns
            ]
            if not chosen:
                raise InputError(
                    f"{label}: has no numeric columns (columns: {', '.join(map(repr, names))}); "
                    "name the columns to read with --pred-cols/--target-cols"
                )
        selections.append(chosen)
    wanted = sorted({i for chosen in selections for i in chosen})
    unique = all(names.count(names[i]) == 1 for i in wanted)
    whole = any(r.columns is None for r in requests)
    dropped = [names[i] for i in sorted(index_columns)] if whole else []
    notes = [
        f"{label}: column {name!r} is the row index pandas stored (to_parquet) and is not "
        "read as data; select columns with --pred-cols/--target-cols to read it"
        for name in dropped
    ]
    if whole:
        skipped = [
            f"{names[i]!r} ({schema.field(i).type})"
            for i in range(len(names))
            if i not in index_columns and kind_of(pa, schema.field(i).type) not in readable
        ]
        if skipped:
            notes.append(
                f"{label}: columns that are not numbers are not read: {', '.join(skipped)}"
            )
    infos = [
        {
            "format": table.format,
            "header": True,
            "index_column": ", ".join(dropped) if dropped and request.columns is None else None,
            "notes": notes,
        }
        for request in requests
    ]
    widths: dict[int, int] = {}  # the list length of each list column, from its first row
    start = 0
    for by_index, line_of in table.batches(wanted, unique, block_rows(blocks, len(wanted))):
        count = len(next(iter(by_index.values())))
        if not count:
            continue
        results = []
        for request, chosen, info in zip(requests, selections, infos):
            shown = label if request.columns is None else f"{label}[{','.join(request.columns)}]"
            place = _Place(shown, start, line_of)
            arrays = [
                _column_values(pa, by_index[i], names[i], place, request, len(chosen), widths, i)
                for i in chosen
            ]
            if any(a.dtype.kind == "U" for a in arrays):
                array = arrays[0]
            else:
                array = arrays[0] if len(arrays) == 1 else np.column_stack(arrays)
                array = narrow(array, request.float_dtype)
            header = [
                name
                for i in chosen
                for name in (
                    [f"{names[i]}[{j}]" for j in range(widths[i])] if i in widths else [names[i]]
                )
            ]
            lines = None if line_of is None else _lines(line_of)
            results.append(
                InputArray(shown, array, header, info, lines, row_offset=start, rows=table.rows)
            )
        yield results
        start += count
    if not start:
        raise InputError(f"{label}: has no data rows")


def _lines(line_of):
    return lambda row: line_of(row)


@dataclass
class _Place:
    """How messages name a row of a batch: its row, or its line where the format has lines."""

    shown: str
    start: int
    line_of: Callable[[int], int] | None

    def __call__(self, row: int) -> str:
        if self.line_of is None:
            return f"row {self.start + row + 1}"
        return f"line {self.line_of(row)}"


def _first(mask_column) -> int:
    return mask_column.to_pylist().index(True)


def _column_values(pa, column, name, place, request: Request, count: int, widths, index):
    if column.null_count:
        first = place(_first(column.is_null()))
        raise InputError(
            f"{place.shown}: column {name!r} has a missing value, the first at {first}"
        )
    kind = kind_of(pa, column.type)
    if kind == "number":
        values = np.empty(len(column), dtype=np.float64)
        # Integers beyond 2**53 round to the nearest float64, as NumPy's conversion does.
        fill_from_arrow(values, column.cast(pa.float64(), safe=False))
        return values
    if kind == "bool":
        return np.array(column.to_pylist(), dtype=np.float64)
    if kind == "list":
        return _list_values(pa, column, name, place, widths, index)
    if kind == "string" and request.names and count == 1:
        return np.array([str(v).strip() for v in column.to_pylist()], dtype=str)
    raise InputError(f"{place.shown}: column {name!r} has type {column.type}; expected numbers")


def _list_values(pa, column, name, place, widths, index) -> np.ndarray:
    """A column of lists as (rows, C): every row's list must hold C numbers."""
    import pyarrow.compute as pc

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    lengths = np.asarray(pc.list_value_length(column).to_pylist(), dtype=np.int64)
    width = widths.setdefault(index, int(lengths[0]))
    wrong = np.flatnonzero(lengths != width)
    if wrong.size:
        row = int(wrong[0])
        raise InputError(
            f"{place.shown}, {place(row)}: column {name!r} holds a list of {lengths[row]} "
            f"values; the lists before hold {width} (every row's list needs the same length)"
        )
    flat = pc.list_flatten(column)
    if flat.null_count:
        row = int(np.searchsorted(np.cumsum(lengths), _first(flat.is_null()), side="right"))
        raise InputError(f"{place.shown}, {place(row)}: column {name!r} has a missing value")
    values = np.empty(len(flat), dtype=np.float64)
    fill_from_arrow(values, flat.cast(pa.float64(), safe=False))
    return values.reshape(len(column), width)
