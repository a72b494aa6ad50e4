"""Arrow IPC, file or stream, and Feather v2 (which is the IPC file format): named columns
like Parquet, read record batch by record batch.

An IPC file (``ARROW1``) has its index at the end and is read through the source's
descriptor (a stream is held whole first); an IPC stream (starting with the 0xFFFFFFFF
continuation marker) is read in order, once, each batch released when read: stdin works.
"""

from __future__ import annotations

from losscli.io.formats import Format

FILE_MAGIC = b"ARROW1"
STREAM_MAGIC = b"\xff\xff\xff\xff"


def read(source, requests, blocks):
    import pyarrow as pa
    import pyarrow.ipc as ipc

    from losscli.io.common import invalid
    from losscli.io.tables import Table, table_blocks

    label = source.label
    try:
        if source.head.startswith(FILE_MAGIC):
            handle = source.seekable_whole()
            handle.seek(0)
            reader = ipc.open_file(handle)
            count = reader.num_record_batches
            batches = (reader.get_batch(i) for i in range(count))
        else:
            reader = ipc.open_stream(source.sequential())
            batches = iter(reader)
        schema = reader.schema
    except (pa.ArrowException, OSError, ValueError) as error:
        raise invalid(label, "Arrow IPC", error) from None

    def record_batches(wanted, unique, rows_per_batch):
        try:
            for batch in batches:
                step = rows_per_batch or max(batch.num_rows, 1)
                for start in range(0, batch.num_rows, step):
                    part = batch.slice(start, step)
                    yield {i: part.column(i) for i in wanted}, None
        except (pa.ArrowException, OSError, ValueError) as error:
            raise invalid(label, "Arrow IPC", error) from None

    yield from table_blocks(Table(label, "arrow", schema, record_batches), requests, blocks)


FORMAT = Format(
    "arrow",
    (".arrow", ".feather", ".ipc"),
    "Arrow IPC file or stream, Feather v2: named columns, read by record batches",
    read,
    magic=lambda head: head.startswith((FILE_MAGIC, STREAM_MAGIC)),
    head_bytes=len(FILE_MAGIC),
    columns=True,
)
