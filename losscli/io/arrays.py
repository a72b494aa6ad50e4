"""NPY and NPZ: read without pickles, the header checked against the bytes really there.

A regular NPY file is memory-mapped through its one open descriptor; a stream's bytes are
viewed in place. An NPZ is opened as a ZIP archive over the same descriptor, and only its
``.npy`` members are arrays.
"""

from __future__ import annotations

import os
import zipfile

import numpy as np

from losscli.errors import InputError, OptionError
from losscli.io.columns import resolve_columns
from losscli.io.common import Blocks, InputArray, ReadAhead, Request, invalid
from losscli.io.common import block_rows as block_row_count
from losscli.io.sources import Source, os_error

# Kinds of NumPy dtype that are numbers; "U"/"S" (strings) are class names where names are read.
NUMERIC_KINDS = "biuf"
NAME_KINDS = "US"


def npy_header(handle, label: str, kind: str):
    """(shape, fortran order, dtype) from an NPY header, refusing pickles and odd dtypes."""
    try:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
    except (ValueError, OSError, EOFError, SyntaxError, TypeError, MemoryError):
        raise invalid(label, kind, "its header cannot be read as an NPY header") from None
    if not all(isinstance(n, int) and n >= 0 for n in shape):
        raise invalid(label, kind, f"its header gives the shape {shape!r}")
    if dtype.hasobject:
        raise InputError(f"{label}: not a safe {kind} file: it holds pickled Python objects")
    return shape, fortran, dtype


def checked_dtype(array: np.ndarray, label: str, kind: str, names: bool) -> np.ndarray:
    """Refuse arrays that are not numbers (or, where names are read, strings)."""
    allowed = NUMERIC_KINDS + (NAME_KINDS if names else "")
    if array.dtype.kind not in allowed or array.dtype.fields is not None:
        expected = "numbers or class names" if names else "numbers"
        raise InputError(f"{label}: {kind} array has dtype {array.dtype}; expected {expected}")
    if array.dtype.kind == "S":
        try:
            return np.char.decode(array, "utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{label}: {kind} byte strings are not UTF-8 class names") from None
    return array


def _expected_bytes(shape, dtype) -> int:
    count = 1
    for n in shape:
        count *= int(n)
    return count * dtype.itemsize


def npy_blocks(source: Source, names: bool = False, blocks: Blocks | None = None):
    """An NPY source's rows in blocks (``blocks`` None: the whole array, memory-mapped for a
    regular file). Blocks of a regular file are read into memory of
    their own, so that what stays resident does not grow with the file."""
    label, handle = source.label, source.file
    handle.seek(0)
    shape, fortran, dtype = npy_header(handle, label, "NPY")
    offset = handle.tell()
    needed = _expected_bytes(shape, dtype)
    held = source.size - offset
    if source.regular and held < needed:
        raise invalid(label, "NPY", f"its header promises {needed} bytes of data, it holds {held}")
    wanted = source.arg.options.rows
    if wanted is not None:  # rows [start, stop) only: a part of the file, as its own array
        if fortran or not shape:
            raise InputError(f"{label}: rows= needs a C-order array with rows")
        start, stop = wanted[0], min(wanted[1], shape[0])
        if start >= shape[0]:
            raise InputError(f"{label}: has {shape[0]} rows; rows={start}:{wanted[1]} holds none")
        offset += start * _expected_bytes(shape[1:], dtype)
        shape = (stop - start, *shape[1:])
        needed = _expected_bytes(shape, dtype)
    order = "F" if fortran else "C"
    rows = shape[0] if shape else None
    block_rows = block_row_count(blocks, _width(shape))
    one_block = block_rows is None or not shape or rows <= block_rows or fortran
    if not source.regular:
        # A stream: read in order, block by block, each released once read.
        yield from _stream_blocks(source, shape, dtype, order, offset, needed, block_rows, names)
        return
    if one_block:
        # One block, or views of a Fortran-order file, memory-mapped.
        if needed == 0:
            array = np.empty(shape, dtype=dtype, order=order)
        else:
            array = np.memmap(
                handle, dtype=dtype, mode="r", offset=offset, shape=shape, order=order
            )
        step = block_rows or max(rows or 1, 1)
        for start in range(0, max(rows or 1, 1), step) if shape else [0]:
            part = array[start : start + step] if shape else array
            yield checked_dtype(part, label, "NPY", names), start, rows
        return
    row_bytes = _expected_bytes(shape[1:], dtype)
    starts = range(0, rows, block_rows)

    def read(start: int) -> np.ndarray:
        count = min(block_rows, rows - start)
        block = np.empty((count, *shape[1:]), dtype=dtype)
        view = memoryview(block.reshape(-1).view(np.uint8))
        done, position = 0, offset + start * row_bytes
        while done < len(view):
            # At its own offset: another reader of the same file may be reading it too.
            try:
                got = os.preadv(handle.fileno(), [view[done:]], position + done)
            except OSError as error:
                raise os_error(label, error) from None
            if not got:
                raise invalid(label, "NPY", "the file became shorter while it was read")
            done += got
        return block

    # The next block is read by a thread while the run computes this one.
    ahead = ReadAhead(read, starts[0])
    for index, start in enumerate(starts):
        block = ahead.result()
        if index + 1 < len(starts):
            ahead = ReadAhead(read, starts[index + 1])
        yield checked_dtype(block, label, "NPY", names), start, rows


def _width(shape) -> int:
    width = 1
    for n in shape[1:]:
        width *= int(n)
    return width


def _stream_blocks(source, shape, dtype, order, offset, needed, block_rows, names):
    """The rows of an NPY stream after its header, read in order; a stream that ends early
    is refused at the block where it ends."""
    label = source.label
    rows = shape[0] if shape else None
    row_bytes = _expected_bytes(shape[1:], dtype) if shape else needed
    step = block_rows or max(rows or 1, 1)
    for start in range(0, max(rows or 1, 1), step) if shape else [0]:
        count = min(step, rows - start) if shape else 1
        data = source.read_at(offset + start * row_bytes, count * row_bytes)
        if len(data) < count * row_bytes:
            held = start * row_bytes + len(data)
            raise invalid(
                label, "NPY", f"its header promises {needed} bytes of data, it holds {held}"
            )
        source.release(offset + start * row_bytes + len(data))
        block_shape = (count, *shape[1:]) if shape else shape
        block = np.frombuffer(data, dtype=dtype).reshape(block_shape, order=order)
        yield checked_dtype(block, label, "NPY", names), start, rows


def _member_blocks(archive, member: str, label: str, names: bool, blocks: Blocks | None):
    info = archive.getinfo(member)
    with archive.open(member) as stream:
        shape, fortran, dtype = npy_header(stream, label, "NPZ")
        needed = _expected_bytes(shape, dtype)
        offset = stream.tell()
        if info.file_size - offset < needed:
            raise invalid(
                label,
                "NPZ",
                f"its header promises {needed} bytes of data, the member holds "
                f"{max(info.file_size - offset, 0)}",
            )
        order = "F" if fortran else "C"
        rows = shape[0] if shape else None
        block_rows = block_row_count(blocks, _width(shape))
        if block_rows is None or not shape or rows <= block_rows or fortran or not needed:
            data = stream.read(needed)
            if len(data) < needed:
                raise invalid(label, "NPZ", "the member is truncated")
            array = (
                np.frombuffer(data, dtype=dtype).reshape(shape, order=order)
                if needed
                else np.empty(shape, dtype=dtype, order=order)
            )
            step = block_rows or max(rows or 1, 1)
            for start in range(0, max(rows or 1, 1), step) if shape else [0]:
                part = array[start : start + step] if shape else array
                yield checked_dtype(part, label, "NPZ", names), start, rows
            return
        row_bytes = _expected_bytes(shape[1:], dtype)
        for start in range(0, rows, block_rows):
            count = min(block_rows, rows - start)
            data = stream.read(count * row_bytes)
            if len(data) < count * row_bytes:
                raise invalid(label, "NPZ", "the member is truncated")
            block = np.frombuffer(data, dtype=dtype).reshape((count, *shape[1:]))
            yield checked_dtype(block, label, "NPZ", names), start, rows


def npz_blocks(source: Source, names: bool = False, blocks: Blocks | None = None):
    """The array of an NPZ source (the one it holds, or the one its ``:key`` names), in
    blocks of rows read from the member as it is decompressed; yields (block, first row,
    rows, key)."""
    label, key = source.label, source.arg.key
    handle = source.seekable_whole()
    handle.seek(0)
    try:
        archive = zipfile.ZipFile(handle)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        raise invalid(label, "NPZ", error) from None
    with archive:
        arrays = [m for m in archive.namelist() if m.endswith(".npy")]
        members = {os.path.splitext(m)[0]: m for m in arrays}
        keys = list(members)
        if len(members) != len(arrays):
            twice = sorted({k for k in keys if arrays.count(members[k]) > 1})
            raise invalid(label, "NPZ", f"it holds two arrays named {', '.join(twice)}")
        if key is None:
            if len(keys) != 1:
                raise InputError(
                    f"{label}: holds {len(keys)} arrays ({', '.join(keys) or 'none'}); "
                    f"name one as {label}:KEY"
                )
            key = keys[0]
        if key not in members:
            others = [m for m in archive.namelist() if m == key]
            what = "is not an NPY array" if others else "does not exist"
            raise InputError(f"{label}: member {key!r} {what}; arrays: {', '.join(keys) or 'none'}")
        read = _member_blocks(archive, members[key], f"{label}:{key}", names, blocks)
        while True:
            try:
                block = next(read)
            except StopIteration:
                return
            except InputError:
                raise
            except Exception as error:  # zipfile and zlib raise several unrelated types
                raise invalid(label, "NPZ", error) from None
            yield (*block, key)


def array_blocks(source: Source, fmt: str, requests: list[Request], found):
    """One InputArray per request for each (block, first row, rows, key) of an array
    format (NPY, NPZ, tensors): the whole array, or columns of a 2-D array by index."""
    info = {"format": fmt, "header": None, "index_column": None, "notes": []}
    for array, start, rows, key in found:
        label = source.label if key is None else f"{source.label}:{key}"
        results = []
        for request in requests:
            if array.dtype.kind in "US" and not request.names:
                raise InputError(f"{label}: array has dtype {array.dtype}; expected numbers")
            if request.columns is None:
                results.append(InputArray(label, array, None, info, row_offset=start, rows=rows))
                continue
            if array.ndim != 2:
                raise OptionError(
                    f"{label}: column selection needs a 2-D table; this array has shape "
                    f"{[rows, *array.shape[1:]] if array.ndim else []}"
                )
            chosen = resolve_columns(request.columns, None, array.shape[1], label)
            selected = array[:, chosen[0]] if len(chosen) == 1 else array[:, chosen]
            shown = f"{label}[{','.join(request.columns)}]"
            results.append(
                InputArray(shown, selected, None, info, None, chosen, row_offset=start, rows=rows)
            )
        yield results


def sliced_blocks(array: np.ndarray, blocks: Blocks | None, key: str | None):
    """(block, first row, rows, key) for an array held whole, in blocks of rows."""
    shape = array.shape
    rows = shape[0] if shape else None
    step = block_row_count(blocks, _width(shape)) or max(rows or 1, 1)
    for start in range(0, max(rows or 1, 1), step) if shape else [0]:
        yield (array[start : start + step] if shape else array), start, rows, key


def pick_key(label: str, key: str | None, keys: list[str], what: str) -> str:
    """The key of the one array to read: ``key``, or the only one there is."""
    if key is None:
        if len(keys) != 1:
            raise InputError(
                f"{label}: holds {len(keys)} {what}s ({', '.join(keys) or 'none'}); "
                f"name one as {label}:KEY"
            )
        return keys[0]
    if key not in keys:
        raise InputError(f"{label}: no {what} named {key!r}; {what}s: {', '.join(keys) or 'none'}")
    return key
