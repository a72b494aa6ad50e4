"""Compressed files and streams (gzip, bzip2, xz, zstd), by extension or magic bytes:
decompressed as a stream (memory bounded by a block, on files and stdin alike), then read
as the format inside: the inner extension's (``preds.csv.gz`` is CSV, ``x.tsv.xz`` TSV,
``rows.jsonl.zst`` JSON Lines), else ``--input-format``, else what its content shows.
"""

from __future__ import annotations

import os

from losscli.io.formats import Format

BZ2_BLOCK = (b"1AY&SY", b"\x17rE8P\x90")  # a first block, or the end of an empty stream


def _gzip(raw):
    import gzip

    return gzip.GzipFile(fileobj=raw, mode="rb")


def _bz2(raw):
    import bz2

    return bz2.BZ2File(raw)


def _xz(raw):
    import lzma

    return lzma.LZMAFile(raw)


def _zstd(raw):
    import pyarrow as pa

    return pa.CompressedInputStream(raw, "zstd")


def _reader(name: str, opener):
    def read(source, requests, blocks):
        from losscli.io.read import open_blocks

        inner = decompressed(source, name, opener)
        shown = f"{inner.format()}+{name}"
        for results in open_blocks(inner, requests, blocks):
            for item in results:
                item.info["format"] = shown
            yield results

    return read


def decompressed(source, name: str, opener):
    """A stream source over the decompressed bytes of ``source``, read once, in order."""
    import lzma
    import zlib
    from dataclasses import replace

    from losscli.errors import InputError
    from losscli.io import formats
    from losscli.io.sources import STDIN, Source, _open_stream

    label = source.label
    try:
        handle = opener(source.sequential())
    except (OSError, ValueError) as error:
        raise InputError(f"{label}: not a valid {name} stream ({error})") from None

    def read(size: int) -> bytes:
        try:
            return handle.read(size)
        except (EOFError, OSError, ValueError, zlib.error, lzma.LZMAError) as error:
            detail = str(error).strip().splitlines()[0] if str(error) else type(error).__name__
            raise InputError(f"{label}: not a valid {name} stream ({detail})") from None

    options = source.arg.options
    forced = options.input_format
    inner_format = None if forced is None or formats.get(forced).compression else forced
    path = source.arg.path
    stem = path if path == STDIN else os.path.splitext(path)[0]
    arg = replace(source.arg, path=stem, options=replace(options, input_format=inner_format))
    stream = _open_stream(read, label, handle.close)
    head = stream.read_at(0, formats.head_bytes())
    return Source(arg, label, stream, False, -1, source.identity, head)


FORMATS = [
    Format(
        "gzip",
        (".gz",),
        "gzip-compressed file of another format (preds.csv.gz is CSV)",
        _reader("gzip", _gzip),
        magic=lambda head: head.startswith(b"\x1f\x8b"),
        head_bytes=2,
        compression=True,
    ),
    Format(
        "bz2",
        (".bz2",),
        "bzip2-compressed file of another format",
        _reader("bz2", _bz2),
        magic=lambda head: head[:3] == b"BZh" and head[3:4].isdigit() and head[4:10] in BZ2_BLOCK,
        head_bytes=10,
        compression=True,
    ),
    Format(
        "xz",
        (".xz",),
        "xz-compressed file of another format",
        _reader("xz", _xz),
        magic=lambda head: head.startswith(b"\xfd7zXZ\x00"),
        head_bytes=6,
        compression=True,
    ),
    Format(
        "zstd",
        (".zst",),
        "zstd-compressed file of another format",
        _reader("zstd", _zstd),
        magic=lambda head: head.startswith(b"\x28\xb5\x2f\xfd"),
        head_bytes=4,
        compression=True,
    ),
]
