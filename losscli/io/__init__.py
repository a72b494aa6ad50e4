"""The input layer: sources opened once, one reader per format, atomic writes.

``SourceSet`` opens every source (and remembers the identity of each file read);
``read_source`` reads one opened source into one InputArray per request (two in
single-file mode, from one read); ``read_input`` does both for one source argument.
"""

from __future__ import annotations

import os

import numpy as np

from losscli.errors import InputError, OptionError
from losscli.io.arrays import read_npy, read_npz
from losscli.io.columns import parse_columns, resolve_columns
from losscli.io.common import InputArray, ReadOptions, Request
from losscli.io.parquet import read_parquet
from losscli.io.sources import Source, SourceSet, parse_source
from losscli.io.text import is_number, read_text, to_number
from losscli.io.write import check_output_path, check_output_shape, write_array

__all__ = [
    "InputArray",
    "ReadOptions",
    "Request",
    "Source",
    "SourceSet",
    "check_output_path",
    "check_output_shape",
    "parse_columns",
    "parse_source",
    "read_input",
    "read_source",
    "read_vector",
    "write_array",
]


def read_source(source: Source, requests: list[Request]) -> list[InputArray]:
    """One InputArray per request, all from one read of ``source``."""
    fmt = source.format()
    options = source.arg.options
    if fmt == "parquet":
        results = read_parquet(source, requests)
    elif fmt in ("npy", "npz"):
        results = _read_array_file(source, fmt, requests)
    else:
        delimiter = options.delimiter
        if delimiter is None and fmt == "tsv":
            delimiter = "\t"
        # A .csv with one column is still comma-separated: its cells may be quoted.
        single = "," if fmt == "csv" else None
        results = read_text(
            source, requests, delimiter=delimiter, header=options.header, one_column=single
        )
    for result in results:
        if result.array.size == 0:
            empty_rows = not result.array.shape or result.array.shape[0] == 0
            what = "no data rows" if empty_rows else "an empty axis"
            raise InputError(f"{result.source}: has {what} (shape {list(result.array.shape)})")
    return results


def _read_array_file(source: Source, fmt: str, requests: list[Request]) -> list[InputArray]:
    names = any(r.names for r in requests)
    if fmt == "npy":
        array, label = read_npy(source, names), source.label
    else:
        array, key = read_npz(source, names)
        label = f"{source.label}:{key}"
    results = []
    for request in requests:
        if array.dtype.kind in "US" and not request.names:
            raise InputError(f"{label}: array has dtype {array.dtype}; expected numbers")
        info = {"format": fmt, "header": None, "index_column": None, "notes": []}
        if request.columns is None:
            results.append(InputArray(label, array, None, info))
            continue
        if array.ndim != 2:
            raise OptionError(
                f"{label}: column selection needs a 2-D table; this array has shape "
                f"{list(array.shape)}"
            )
        chosen = resolve_columns(request.columns, None, array.shape[1], label)
        selected = array[:, chosen[0]] if len(chosen) == 1 else array[:, chosen]
        shown = f"{label}[{','.join(request.columns)}]"
        results.append(InputArray(shown, selected, None, info, None, chosen))
    return results


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
