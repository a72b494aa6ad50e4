"""Parquet: every numeric column, or the chosen ones, read through the source's descriptor."""

from __future__ import annotations

import numpy as np

from losscli.errors import InputError
from losscli.io.columns import resolve_columns
from losscli.io.common import Blocks, InputArray, Request, block_rows, invalid, narrow
from losscli.io.sources import Source
from losscli.io.text import fill_from_arrow


def _kind(pa, arrow_type) -> str:
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
    if pa.types.is_dictionary(arrow_type) and _kind(pa, arrow_type.value_type) == "string":
        return "string"
    return "other"


def parquet_blocks(source: Source, requests: list[Request], blocks: Blocks | None = None):
    """Read a Parquet source once, in record batches (``blocks`` None: the whole table),
    and yield one InputArray per request for each."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    label = source.label
    handle = source.seekable_whole()
    handle.seek(0)
    try:
        parquet = pq.ParquetFile(handle)
        schema = parquet.schema_arrow
    except (pa.ArrowException, OSError, ValueError) as error:
        raise invalid(label, "Parquet", error) from None
    names = list(schema.names)
    index_columns = _pandas_index_columns(schema, names)
    selections = []
    for request in requests:
        if request.columns is not None:
            chosen = resolve_columns(request.columns, names, len(names), label)
        else:
            chosen = [
                i
                for i, f in enumerate(schema)
                if _kind(pa, f.type) in ("number", "bool") and i not in index_columns
            ]
            if not chosen:
                raise InputError(
                    f"{label}: has no numeric columns (columns: {', '.join(map(repr, names))}); "
                    "name the columns to read with --pred-cols/--target-cols"
                )
        selections.append(chosen)
    wanted = sorted({i for chosen in selections for i in chosen})
    unique = all(names.count(names[i]) == 1 for i in wanted)
    group = source.arg.options.row_group
    rows = parquet.metadata.num_rows
    if group is not None:
        if group >= parquet.num_row_groups:
            parquet.close()
            raise InputError(
                f"{label}: has {parquet.num_row_groups} row group(s); row_group={group} is not one"
            )
        rows = parquet.metadata.row_group(group).num_rows
    if rows == 0:
        parquet.close()
        raise InputError(f"{label}: has no data rows")
    dropped = [names[i] for i in index_columns] if any(r.columns is None for r in requests) else []
    notes = [
        f"{label}: column {name!r} is the row index pandas stored (to_parquet) and is not "
        "read as data; select columns with --pred-cols/--target-cols to read it"
        for name in dropped
    ]
    if any(r.columns is None for r in requests):
        skipped = [
            f"{names[i]!r} ({schema.field(i).type})"
            for i in range(len(names))
            if i not in index_columns and _kind(pa, schema.field(i).type) not in ("number", "bool")
        ]
        if skipped:
            notes.append(
                f"{label}: columns that are not numbers are not read: {', '.join(skipped)}"
            )
    infos = [
        {
            "format": "parquet",
            "header": True,
            "index_column": ", ".join(dropped) if dropped and request.columns is None else None,
            "notes": notes,
        }
        for request in requests
    ]
    start = 0
    try:
        for by_index in _batches(
            pa, parquet, label, names, wanted, unique, block_rows(blocks, len(wanted)), group
        ):
            count = len(next(iter(by_index.values())))
            results = []
            for request, chosen, info in zip(requests, selections, infos):
                shown = (
                    label if request.columns is None else f"{label}[{','.join(request.columns)}]"
                )
                arrays = [
                    _column_values(pa, by_index[i], names[i], shown, request, len(chosen), start)
                    for i in chosen
                ]
                if any(a.dtype.kind == "U" for a in arrays):
                    array = arrays[0]
                else:
                    array = arrays[0] if len(arrays) == 1 else np.column_stack(arrays)
                    array = narrow(array, request.float_dtype)
                header = [names[i] for i in chosen]
                results.append(InputArray(shown, array, header, info, row_offset=start, rows=rows))
            yield results
            start += count
    finally:
        parquet.close()


def _batches(pa, parquet, label, names, wanted, unique, rows_per_batch, group=None):
    """{column index: Arrow array} for each batch of rows (one batch without ``rows_per_batch``)."""
    columns = [names[i] for i in wanted] if unique else None
    try:
        groups = None if group is None else [group]
        if rows_per_batch is None:
            if group is None:
                table = parquet.read(columns=columns, use_threads=True)
            else:
                table = parquet.read_row_group(group, columns=columns, use_threads=True)
            batches = [table]
        else:
            batches = parquet.iter_batches(
                batch_size=rows_per_batch, row_groups=groups, columns=columns, use_threads=True
            )
        for batch in batches:
            if unique:
                yield dict(zip(wanted, batch.columns))
            else:
                yield {i: batch.column(i) for i in wanted}
    except (pa.ArrowException, OSError, ValueError) as error:
        raise invalid(label, "Parquet", error) from None


def _pandas_index_columns(schema, names: list[str]) -> set[int]:
    """Columns that pandas' to_parquet stored as the row index (its metadata says which)."""
    metadata = schema.pandas_metadata or {}
    stored = [c for c in metadata.get("index_columns", []) if isinstance(c, str)]
    return {i for i, name in enumerate(names) if name in stored}


def _column_values(pa, column, name, shown, request: Request, count: int, start: int):
    if column.null_count:
        first = start + column.is_null().to_pylist().index(True) + 1
        raise InputError(f"{shown}: column {name!r} has a missing value, the first at row {first}")
    kind = _kind(pa, column.type)
    if kind == "number":
        values = np.empty(len(column), dtype=np.float64)
        # Integers beyond 2**53 round to the nearest float64, as NumPy's conversion does.
        fill_from_arrow(values, column.cast(pa.float64(), safe=False))
        return values
    if kind == "bool":
        return np.array(column.to_pylist(), dtype=np.float64)
    if kind == "string" and request.names and count == 1:
        return np.array([str(v).strip() for v in column.to_pylist()], dtype=str)
    raise InputError(f"{shown}: column {name!r} has type {column.type}; expected numbers")
