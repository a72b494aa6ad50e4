"""The formats losscli reads: one module per format in this package, each declaring a
``FORMAT`` (or several in ``FORMATS``: csv, tsv and txt share a reader).

The format list, the extensions, the ``--input-format`` choices, sniffing by magic bytes,
the header bytes a source keeps and the dispatch to a reader are all derived from these
declarations. Importing this package is cheap (no NumPy, no pyarrow, no torch): a format's
reader imports what it needs when it reads.
"""

from __future__ import annotations

import functools
import importlib
import os
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from losscli.io.common import Blocks, InputArray, Request
    from losscli.io.sources import Source

# The format of a source whose content shows no magic bytes.
DEFAULT = "txt"


@dataclass(frozen=True)
class Format:
    """One format: how it is named, recognised and read.

    ``read(source, requests, blocks)`` yields one InputArray per request for each block of
    rows. ``magic(head)`` says whether a source's first ``head_bytes`` bytes are this format
    (None: the format has no magic bytes and is known by its extension or the option).
    ``columns``: the format has named columns (``--pred-cols NAME``, ``--group-by``).
    ``keys``: a file holds several arrays, one named as ``FILE:KEY``. ``compression``: the
    format is a compressed stream of another format (known by its extension or content).
    """

    name: str
    extensions: tuple[str, ...]
    summary: str
    read: Callable[[Source, list[Request], Blocks | None], Iterator[list[InputArray]]]
    magic: Callable[[bytes], bool] | None = None
    head_bytes: int = 0
    columns: bool = False
    keys: bool = False
    compression: bool = False


@functools.cache
def registry() -> dict[str, Format]:
    """Every format, by name, in the order of their modules (then of their declarations)."""
    found: dict[str, Format] = {}
    modules = sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
    for module in modules:
        loaded = importlib.import_module(f"{__name__}.{module}")
        declared = getattr(loaded, "FORMATS", None) or [loaded.FORMAT]
        for fmt in declared:
            if fmt.name in found:  # pragma: no cover - a mistake in a new module
                raise RuntimeError(f"two formats are named {fmt.name!r}")
            found[fmt.name] = fmt
    return found


def names() -> tuple[str, ...]:
    """Every format's name (the ``--input-format`` choices)."""
    return tuple(registry())


def get(name: str) -> Format:
    return registry()[name]


@functools.cache
def extensions() -> dict[str, str]:
    """Extension (``.csv``) -> format name."""
    return {ext: fmt.name for fmt in registry().values() for ext in fmt.extensions}


def head_bytes() -> int:
    """How many first bytes of a source sniffing needs (read once, kept by the Source)."""
    return max(8, *(fmt.head_bytes for fmt in registry().values()))


def by_extension(path: str) -> Format | None:
    """The format a path's extension names, if any."""
    name = extensions().get(os.path.splitext(path)[1].lower())
    return None if name is None else registry()[name]


def sniff(head: bytes) -> Format | None:
    """The format whose magic bytes ``head`` starts with; None for none (text)."""
    for fmt in registry().values():
        if fmt.magic is not None and fmt.magic(head):
            return fmt
    return None


def detect(forced: str | None, path: str | None, head: bytes) -> Format:
    """The format of a source: a compressed stream where its extension, the option or its
    magic bytes say so (the option or the inner extension then name what is inside); else
    the option, else the extension, else the content's magic bytes, else text."""
    if forced is not None and forced not in registry():
        from losscli.errors import OptionError

        raise OptionError(f"input format {forced!r} is not one of {', '.join(names())}")
    chosen = registry()[forced] if forced is not None else None
    if chosen is None and path is not None:
        chosen = by_extension(path)
    if chosen is not None and (chosen.magic is None or chosen.compression):
        shown = sniff(head)
        if shown is not None and shown.compression:
            return shown  # text that is really compressed: decompressed, then read
        return chosen
    if chosen is not None:
        return chosen
    return sniff(head) or registry()[DEFAULT]


def describe() -> list[dict[str, Any]]:
    """Each format as ``list-formats`` shows it."""
    return [
        {
            "name": fmt.name,
            "extensions": list(fmt.extensions),
            "magic": fmt.magic is not None,
            "columns": fmt.columns,
            "keys": fmt.keys,
            "summary": fmt.summary,
        }
        for fmt in registry().values()
    ]


def binary_names() -> str:
    """The formats with magic bytes, as a message lists them."""
    return ", ".join(fmt.name for fmt in registry().values() if fmt.magic is not None)


_UTF_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32LE"),
    (b"\x00\x00\xfe\xff", "UTF-32BE"),
    (b"\xff\xfe", "UTF-16LE"),
    (b"\xfe\xff", "UTF-16BE"),
)


def wide_encoding(data: bytes) -> str | None:
    """UTF-16 or UTF-32 (LE/BE) where a byte order mark or the pattern of NUL bytes of
    ASCII text in that encoding shows it; None otherwise."""
    for bom, name in _UTF_BOMS:
        if data.startswith(bom):
            return name
    sample = data[:256]
    for width, name in ((4, "UTF-32"), (2, "UTF-16")):
        count = len(sample) // width * width
        if count < 2 * width:
            continue
        units = [sample[i : i + width] for i in range(0, count, width)]
        for order, text_at in (("LE", 0), ("BE", width - 1)):
            if all(
                unit[text_at] != 0 and not any(unit[j] for j in range(width) if j != text_at)
                for unit in units
            ):
                return f"{name}{order}"
    return None


def not_text(label: str, line: int, data: bytes, reason: str) -> str:
    """The message for bytes that are not UTF-8 text and not a known binary format;
    ``reason`` is what was found (a NUL byte, bytes that are not UTF-8)."""
    encoding = wide_encoding(data)
    if encoding is not None:
        return (
            f"{label}: looks like {encoding} text; losscli reads text as UTF-8: save it as "
            f"UTF-8 (iconv -f {encoding} -t UTF-8)"
        )
    return (
        f"{label}, line {line}: not text ({reason}) and not a file of a binary format "
        f"losscli knows ({binary_names()})"
    )
