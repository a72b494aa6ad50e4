"""Reading: one entry point that dispatches each source to its format's reader.

``SourceSet`` opens every source (and remembers the identity of each file read);
``read_source`` reads one opened source into one InputArray per request (two in
single-file mode, from one read); ``read_input`` does both for one source argument.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from losscli.errors import InputError, OptionError
from losscli.io import formats
from losscli.io.common import Blocks, InputArray, ReadOptions, Request, concat_rows, narrow
from losscli.io.sources import Source, SourceSet, parse_source
from losscli.io.text import is_number, to_number


def open_blocks(source: Source, requests: list[Request], blocks: Blocks | None = None):
    """Yield one InputArray per request for each block of rows of ``source``, read once
    (``blocks`` None: the whole source, in as few blocks as its reader makes, to be joined).
    Each block knows its first row (``row_offset``) and, where the format says, the rows of
    the whole source (``rows``)."""
    fmt = source.format()
    options = source.arg.options
    if options.row_group is not None and fmt != "parquet":
        raise OptionError(f"{source.arg.text}: row_group= reads a Parquet file; this is {fmt}")
    if options.rows is not None and (fmt != "npy" or not source.regular):
        raise OptionError(f"{source.arg.text}: rows= reads an NPY file; this is {fmt}")
    read = formats.get(fmt).read(source, requests, blocks)
    first = True
    for results in read:
        if first:
            for result in results:
                if result.array.size == 0:
                    empty_rows = not result.array.shape or result.array.shape[0] == 0
                    what = "no data rows" if empty_rows else "an empty axis"
                    raise InputError(f"{result.source}: has {what} (shape {result.shape})")
            first = False
        yield results


def read_source(source: Source, requests: list[Request]) -> list[InputArray]:
    """One InputArray per request, all from one read of ``source``."""
    joined = join_blocks(list(open_blocks(source, requests)))
    return [
        item.with_array(narrow(item.array, request.float_dtype))
        for item, request in zip(joined, requests)
    ]


def join_blocks(blocks: list[list[InputArray]], label: str | None = None) -> list[InputArray]:
    """One InputArray per request from consecutive blocks of rows: arrays joined along the
    first axis, row numbers and lines still those of each block's source. ``label`` names
    the joined input (a folder of shards); blocks from several sources keep theirs in
    messages."""
    joined = []
    for parts in zip(*blocks):
        first = parts[0]
        if len(parts) == 1 and label is None:
            rows = len(first.array) if first.array.ndim else None
            joined.append(dataclasses.replace(first, rows=rows, row_offset=0))
            continue
        arrays = [part.array for part in parts]
        array = concat_rows(arrays)
        starts = np.cumsum([0] + [len(a) for a in arrays])
        joined.append(
            InputArray(
                label or first.source,
                array,
                first.header,
                first.info,
                None,
                first.file_columns,
                rows=len(array),
                locate=_locator(parts, starts),
            )
        )
    return joined


def _locator(parts, starts):
    """row of the joined array -> (the block's InputArray, row within that block)."""

    def locate(row: int):
        block = min(max(int(np.searchsorted(starts, row, side="right")) - 1, 0), len(parts) - 1)
        return parts[block], row - int(starts[block])

    return locate


def read_vector(
    option: str,
    value,
    sources: SourceSet | None = None,
    defaults: ReadOptions | None = None,
    notes: list[str] | None = None,
) -> np.ndarray | None:
    """A --weight style option: a comma-separated list, a file path (read with the reading
    options ``defaults``; what reading decided is added to ``notes``), or an array-like."""
    if value is None:
        return None
    if isinstance(value, str):
        cells = [c.strip() for c in value.split(",")]
        if all(is_number(c) for c in cells):
            vector = np.array([to_number(c) for c in cells], dtype=np.float64)
        else:
            arg = parse_source(value, defaults or ReadOptions())
            if arg.path == "-" or not os.path.lexists(arg.path):
                raise OptionError(
                    f"{option} {value!r} is neither a comma-separated list of numbers "
                    "nor an existing file"
                )
            owned = sources is None
            sources = sources or SourceSet(stdin_fd=None)
            try:
                read = read_source(sources.open(arg), [Request()])[0]
            finally:
                if owned:
                    sources.close()
            vector = np.asarray(read.array, dtype=np.float64).ravel()
            if notes is not None:
                notes.extend(read.info["notes"])
    else:
        try:
            vector = np.asarray(value, dtype=np.float64).ravel()
        except (TypeError, ValueError):
            raise OptionError(f"{option} must be numbers") from None
    if not np.isfinite(vector).all():
        raise OptionError(f"{option} has NaN or inf entries; weights must be finite numbers")
    return vector


def read_input(
    source: str,
    *,
    input_format: str | None = None,
    delimiter: str | None = None,
    header: bool | None = None,
    columns: list[str] | tuple[str, ...] | None = None,
    allow_names: bool = False,
    float_dtype=np.float64,
    stdin=None,
) -> InputArray:
    """Read one source argument (a path, ``path.npz:key``, ``-``, with ``?options``).

    ``stdin`` may be a binary file object to read instead of the process's stdin.
    """
    defaults = ReadOptions(input_format, delimiter, header)
    request = Request(tuple(columns) if columns is not None else None, allow_names, float_dtype)
    with SourceSet(stdin_fd=0 if stdin is None else stdin) as sources:
        opened = sources.open(parse_source(source, defaults))
        return read_source(opened, [request])[0]
