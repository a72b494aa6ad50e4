"""JSON Lines (``.jsonl``, ``.ndjson``): one object a line. Scalar fields are columns; a
field whose value is a list of numbers is a group of columns (``--pred-cols logits`` reads
a row's list as its C values; every row's list must have the same length).

Read in chunks of whole lines (the text reader's, so that a stream is read once with
bounded memory), each parsed by pyarrow's JSON reader with the schema of the first chunk
(integers read as floats); rows keep their line numbers for messages.
"""

from __future__ import annotations

import re

from losscli.io.formats import Format

# Bytes of whole lines parsed at a time.
CHUNK_BYTES = 1 << 23


def _widened(pa, schema):
    """The first chunk's schema with integers as float64, so that a later 2.5 fits."""

    def widen(arrow_type):
        if pa.types.is_integer(arrow_type):
            return pa.float64()
        if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
            return pa.list_(widen(arrow_type.value_type))
        return arrow_type

    return pa.schema([pa.field(f.name, widen(f.type)) for f in schema])


def read(source, requests, blocks):
    import pyarrow as pa
    import pyarrow.json as pajson

    from losscli.errors import InputError
    from losscli.io.formats import not_text, wide_encoding
    from losscli.io.tables import Table, table_blocks
    from losscli.io.text import _chunks, nonblank_lines

    label = source.label
    chunks = _chunks(source, 0, 1, CHUNK_BYTES)

    def parse(chunk, first_line, schema):
        options = pajson.ParseOptions(
            explicit_schema=schema, unexpected_field_behavior="infer" if schema is None else "error"
        )
        try:
            return pajson.read_json(pa.py_buffer(chunk), parse_options=options)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as error:
            data = bytes(chunk)
            if wide_encoding(data) is not None:
                raise InputError(not_text(label, first_line(), data, "")) from None
            detail = str(error).strip().splitlines()[0]
            # pyarrow counts the rows of the chunk from 0: say the file's line instead.
            where = f"in the lines from line {first_line()} on"
            row = re.search(r"\s*in row (\d+)", detail)
            lines = [number for number, *_ in nonblank_lines(data, first_line())]
            if row is not None and int(row.group(1)) < len(lines):
                where = f"line {lines[int(row.group(1))]}"
                detail = detail[: row.start()] + detail[row.end() :]
            raise InputError(
                f"{label}, {where}: not valid JSON Lines ({detail}); every line must be one "
                "JSON object with the same fields"
            ) from None

    first = next(chunks, None)
    if first is None:
        raise InputError(f"{label}: is empty; it has no data rows")
    table = parse(*first, None)
    schema = _widened(pa, table.schema)
    if table.schema != schema:
        table = table.cast(schema)

    def batches(wanted, unique, rows_per_batch):
        parsed, chunk = table, first
        while True:
            lines = [number for number, *_ in nonblank_lines(bytes(chunk[0]), chunk[1]())]
            step = rows_per_batch or max(parsed.num_rows, 1)
            for start in range(0, parsed.num_rows, step):
                part = parsed.slice(start, step)
                yield {i: part.column(i) for i in wanted}, _line_of(lines, start)
            chunk = next(chunks, None)
            if chunk is None:
                return
            parsed = parse(*chunk, schema)

    yield from table_blocks(Table(label, "jsonl", schema, batches, lists=True), requests, blocks)


def _line_of(lines: list[int], start: int):
    return lambda row: lines[start + row] if start + row < len(lines) else lines[-1]


FORMAT = Format(
    "jsonl",
    (".jsonl", ".ndjson"),
    "JSON Lines: scalar fields are columns, a list of numbers a group of columns",
    read,
    columns=True,
)
