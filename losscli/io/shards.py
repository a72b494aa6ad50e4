"""Sharded inputs: a directory or a glob pattern is one input made of its files, in order.

A directory's shards are its regular files, sorted by name, except hidden ones and those
starting with ``_`` (``_SUCCESS``, ``_metadata``). A pattern (``'preds/*.parquet'``, quoted so
that the shell leaves it alone) names the files it matches, sorted. Shards are read one after
the other, block by block, as one input; their shapes must agree past the first axis.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from dataclasses import replace

from losscli.errors import InputError
from losscli.io.common import InputArray
from losscli.io.sources import STDIN, SourceArg, is_pattern, is_url


def shard_args(arg: SourceArg) -> list[SourceArg] | None:
    """The shards of a directory or pattern argument, each as its own source; None for a
    plain source."""
    if arg.path == STDIN:
        return None
    if is_url(arg.path):
        return _url_shards(arg)
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


def _url_shards(arg: SourceArg) -> list[SourceArg] | None:
    """The shards of a URL that names a folder or a pattern (fsspec lists them)."""
    try:
        import fsspec.core
    except ImportError:
        return None  # opening it says that fsspec is needed
    try:
        fs, path = fsspec.core.url_to_fs(arg.path)
        if any(ch in path for ch in "*?["):
            paths = sorted(p for p in fs.glob(path) if fs.isfile(p))
        elif fs.isdir(path):
            paths = sorted(
                p
                for p in fs.ls(path, detail=False)
                if fs.isfile(p) and not os.path.basename(p).startswith((".", "_"))
            )
        else:
            return None
    except (OSError, ValueError) as error:
        raise InputError(f"{arg.path}: cannot list: {error}") from None
    if not paths:
        raise InputError(f"{arg.path}: the folder or pattern holds no data files")
    urls = [fs.unstrip_protocol(p) for p in paths]
    return [replace(arg, text=url, path=url) for url in urls]


def check_shard(label: str, first: InputArray, part: InputArray) -> None:
    """Refuse a shard that does not go on from the first: other columns, another shape past
    the first axis, or class names where the first holds numbers (or the reverse)."""
    if part.header != first.header:
        raise InputError(
            f"{label}: shard {part.source} has the columns {part.header}, but {first.source} "
            f"has {first.header}; shards must have the same columns in the same order"
        )
    if part.array.shape[1:] != first.array.shape[1:] or part.array.ndim != first.array.ndim:
        raise InputError(
            f"{label}: shard {part.source} has shape {part.shape}, but {first.source} has "
            f"{first.shape}; shards must agree past the first axis"
        )
    if (part.array.dtype.kind in "US") != (first.array.dtype.kind in "US"):
        raise InputError(
            f"{label}: shards {first.source} and {part.source} differ: one holds class "
            "names, the other numbers"
        )


def shard_blocks(arg: SourceArg, shards: list[SourceArg], sources, requests, blocks):
    """The blocks of every shard in order, each checked against the first shard's first
    block; each block names its shard (messages give the shard's rows and lines) and says
    how many shards the input has."""
    from losscli.io import open_blocks

    first = None
    for shard in shards:
        for block in open_blocks(sources.open(shard), requests, blocks):
            if first is None:
                first = block
            else:
                for known, part in zip(first, block):
                    check_shard(arg.path, known, part)
            yield [
                dataclasses.replace(
                    item,
                    info={
                        **item.info,
                        "shards": len(shards),
                        "label": arg.path
                        if request.columns is None
                        else f"{arg.path}[{','.join(request.columns)}]",
                    },
                )
                for item, request in zip(block, requests)
            ]
