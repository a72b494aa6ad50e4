"""Parquet: every numeric column, or the chosen ones, read through the source's descriptor."""

from __future__ import annotations

from losscli.errors import InputError
from losscli.io.common import Blocks, Request, invalid
from losscli.io.sources import Source
from losscli.io.tables import Table, table_blocks


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

    def batches(wanted, unique, rows_per_batch):
        for by_index in _batches(pa, parquet, label, names, wanted, unique, rows_per_batch, group):
            yield by_index, None

    index_columns = frozenset(_pandas_index_columns(schema, names))
    table = Table(label, "parquet", schema, batches, rows, index_columns)
    try:
        yield from table_blocks(table, requests, blocks)
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
