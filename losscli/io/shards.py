"""Sharded inputs: a directory or a glob pattern is one input made of its files, in order.

A directory's shards are its regular files, sorted by name, except hidden ones and those
starting with ``_`` (``_SUCCESS``, ``_metadata``). A pattern (``'preds/*.parquet'``, quoted so
that the shell leaves it alone) names the files it matches, sorted. Shards are read one by
one and joined along the first axis; their shapes must agree past it.
"""

from __future__ import annotations

import glob
import os
from dataclasses import replace

import numpy as np

from losscli.errors import InputError
from losscli.io.common import InputArray
from losscli.io.sources import STDIN, SourceArg, is_pattern


def shard_args(arg: SourceArg) -> list[SourceArg] | None:
    """The shards of a directory or pattern argument, each as its own source; None for a
    plain source."""
    if arg.path == STDIN:
        return None
    if os.path.isdir(arg.path):
        names = sorted(
            name
            for name in os.listdir(arg.path)
            if not name.startswith((".", "_")) and os.path.isfile(os.path.join(arg.path, name))
        )
        paths = [os.path.join(arg.path, name) for name in names]
        where = "folder"
    elif is_pattern(arg.path):
        paths = sorted(p for p in glob.glob(arg.path) if os.path.isfile(p))
        where = "pattern"
    else:
        return None
    if not paths:
        raise InputError(f"{arg.path}: the {where} holds no data files")
    seen: dict[tuple[int, int], str] = {}
    for path in paths:
        info = os.stat(path)
        identity = (info.st_dev, info.st_ino)
        if identity in seen:
            raise InputError(
                f"{arg.path}: shards {seen[identity]} and {path} are the same file; "
                "its rows would be read twice"
            )
        seen[identity] = path
    return [replace(arg, text=path, path=path) for path in paths]


def join_shards(label: str, parts: list[InputArray], columns: tuple | None) -> InputArray:
    """One input from the shards read with the same request (``columns``), joined along the
    first axis."""
    first = parts[0]
    for part in parts[1:]:
        if part.header != first.header:
            raise InputError(
                f"{label}: shard {part.source} has the columns {part.header}, but {first.source} "
                f"has {first.header}; shards must have the same columns in the same order"
            )
        if part.array.shape[1:] != first.array.shape[1:] or part.array.ndim != first.array.ndim:
            raise InputError(
                f"{label}: shard {part.source} has shape {list(part.array.shape)}, but "
                f"{first.source} has {list(first.array.shape)}; shards must agree past the "
                "first axis"
            )
        if (part.array.dtype.kind in "US") != (first.array.dtype.kind in "US"):
            raise InputError(
                f"{label}: shards {first.source} and {part.source} differ: one holds class "
                "names, the other numbers"
            )
    array = np.concatenate([part.array for part in parts]) if len(parts) > 1 else first.array
    notes = [note for part in parts for note in part.info.get("notes", [])]
    info = {**first.info, "notes": notes, "shards": len(parts)}
    shown = label if columns is None else f"{label}[{','.join(columns)}]"
    return InputArray(shown, array, first.header, info)
