"""Parquet: named columns, read by row groups (reader: ``losscli.io.parquet``)."""

from __future__ import annotations

from losscli.io.formats import Format

MAGIC = b"PAR1"


def read(source, requests, blocks):
    from losscli.io.parquet import parquet_blocks

    return parquet_blocks(source, requests, blocks)


FORMAT = Format(
    "parquet",
    (".parquet", ".pq"),
    "Apache Parquet table: named columns, read by row groups",
    read,
    magic=lambda head: head.startswith(MAGIC),
    head_bytes=len(MAGIC),
    columns=True,
)
