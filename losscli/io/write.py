"""Writing gradients: atomic (a temporary file, then a rename), never over a file that is read.

The path is checked before any computation: its extension, its folder, and its identity
(device and inode, through links) against every file the run reads. A new file gets the
mode that ``umask`` gives; a replaced file keeps its mode. The temporary file is removed on
any failure, and on SIGINT, SIGTERM or SIGHUP (the CLI turns those into exceptions).
"""

from __future__ import annotations

import csv
import io
import os
import stat
import tempfile
from pathlib import Path

import numpy as np

from losscli.errors import OptionError

GRAD_OUT_EXTENSIONS = (".npy", ".csv", ".tsv", ".txt", ".parquet")
# Bytes of values read back at a time when a written file is scaled or converted.
WRITE_BLOCK_BYTES = 1 << 24


def _identities(path: Path) -> set[tuple[int, int]]:
    found = set()
    for follow in (True, False):
        try:
            info = path.stat() if follow else path.lstat()
        except OSError:
            continue
        found.add((info.st_dev, info.st_ino))
    return found


def check_output_path(
    option: str,
    path: str,
    read: dict[tuple[int, int], str],
    extensions: tuple[str, ...] = GRAD_OUT_EXTENSIONS,
) -> Path:
    """Refuse an output path that would replace a file the run reads, or cannot be written."""
    target = Path(path)
    clash = next((read[i] for i in _identities(target) if i in read), None)
    if clash is not None:
        raise OptionError(
            f"{option} {path} is a file this run reads ({clash}); choose another path"
        )
    if target.suffix.lower() not in extensions:
        raise OptionError(f"{option} {path}: unknown extension; use one of {', '.join(extensions)}")
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise OptionError(f"{option} {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise OptionError(f"{option} {path}: folder {folder} is not writable")
    if target.is_dir():
        raise OptionError(f"{option} {path} is a directory")
    if target.is_file() and not target.stat().st_mode & 0o222:
        raise OptionError(f"{option} {path} is read-only; choose another path or make it writable")
    return target


def refuse_same_file(outputs: dict[str, Path | None]) -> None:
    """Refuse two output options ({flag: checked path or None}) that name the same file."""
    seen: dict[Path, str] = {}
    for option, path in outputs.items():
        if path is None:
            continue
        resolved = path.resolve()
        if resolved in seen:
            raise OptionError(f"{seen[resolved]} and {option} name the same file")
        seen[resolved] = option


def check_output_shape(option: str, path: Path, shape: tuple[int, ...]) -> None:
    """Text and Parquet files hold at most two dimensions."""
    if path.suffix.lower() != ".npy" and len(shape) > 2:
        raise OptionError(
            f"{option} {path}: an array of shape {shape} needs .npy "
            "(text and Parquet hold 1-D or 2-D arrays)"
        )


def _new_file_mode() -> int:
    """The mode ``open`` gives a new file under the current umask."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def unique_names(names: list[str]) -> list[str]:
    """Column names made unique (a repeated name gets .1, .2, ... as pandas does)."""
    seen: dict[str, int] = {}
    taken = set(names)
    out = []
    for name in names:
        if name not in seen:
            seen[name] = 0
            out.append(name)
            continue
        while True:
            seen[name] += 1
            candidate = f"{name}.{seen[name]}"
            if candidate not in taken:
                break
        taken.add(candidate)
        out.append(candidate)
    return out


def _printable_name(name: str) -> str:
    """A header name with line breaks and control characters escaped, so the file reads back."""
    return "".join(
        ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii")
        for ch in name
    )


def _kept_mode(path: Path) -> int:
    """The mode the written file gets: a replaced file keeps its own (never setuid, setgid or
    sticky); a new one gets what the umask gives."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode) & 0o777
    except OSError:
        return _new_file_mode()


def _temporary(path: Path, suffix: str, mode: int) -> tuple:
    """A new temporary file beside ``path`` with ``mode``: (binary file object, its name)."""
    folder = path.parent if str(path.parent) else Path(".")
    try:
        # A short temporary name: the final name may already be as long as names can be.
        handle, name = tempfile.mkstemp(prefix=f".{path.name[:32]}.", suffix=suffix, dir=folder)
    except OSError as error:
        raise OptionError(f"cannot write {path}: {error.strerror or error}") from None
    try:
        os.fchmod(handle, mode)
    except OSError as error:
        os.close(handle)
        Path(name).unlink(missing_ok=True)
        raise OptionError(f"cannot write {path}: {error.strerror or error}") from None
    return os.fdopen(handle, "w+b"), name


def write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically, as gradients are written."""
    out, temporary = _temporary(path, ".tmp", _kept_mode(path))
    try:
        with out:
            out.write(text.encode("utf-8"))
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise OptionError(f"cannot write {path}: {error.strerror or error}") from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def scaled_as_stored(dtype, factor: float, value: float) -> float:
    """``value`` times ``factor`` as an array of ``dtype`` stores it (both rounded to the
    dtype, as NumPy multiplies an array by a scalar). Rounding is monotonic, so the min and
    max of a scaled array are the scaled min and max."""
    kind = np.dtype(dtype).type
    with np.errstate(invalid="ignore", over="ignore"):
        return float(kind(value) * kind(factor))


def write_array(path: Path, array: np.ndarray, columns: list[str] | None = None) -> None:
    """Write ``array`` to ``path`` by extension, atomically: a temporary file, then a rename."""
    writer = BlockWriter(path, array.shape[1:] if array.ndim else None, array.dtype, columns)
    try:
        writer.add(array)
        writer.commit()
    finally:
        writer.close()


class BlockWriter:
    """An array written block by block of rows to a temporary file beside ``path``, renamed
    into place by ``commit`` (which may first scale every value: the gradient of a mean is
    known only once its denominator is). ``trailing`` is the shape past the first axis (None
    for a 0-d array); ``applied`` is the factor the values given to ``add`` already carry.
    An NPY file is written in place, its header last; text and Parquet are written from a
    spill file of raw values at ``commit``. Blocks are written by a thread of the writer's
    own, in large sequential writes, while the run computes the next. ``close`` removes
    whatever was not committed."""

    def __init__(
        self,
        path: Path,
        trailing,
        dtype,
        columns: list[str] | None = None,
        applied: float = 1.0,
    ):
        self.path = path
        self.suffix = path.suffix.lower()
        self.trailing = None if trailing is None else tuple(trailing)
        self.dtype = np.dtype(dtype)
        self.rows = 0
        self.applied = applied
        self.thread = self.queue = self.failure = None
        self.temporaries: list[str] = []
        self.mode = _kept_mode(path)
        self.columns = None
        width = int(np.prod(self.trailing)) if self.trailing else 1
        if columns is not None and len(columns) == width:
            self.columns = unique_names([_printable_name(c) for c in columns])
        self.out = self.spill = None
        self.header_bytes = 0
        try:
            self.out = self._temporary(".tmp")
            self.spill = None if self.suffix == ".npy" else self._temporary(".spill")
            if self.suffix == ".npy" and self.trailing is not None:
                self.header_bytes = len(self._npy_header(2**63 - 1))
                self._write(self.out, b" " * self.header_bytes)
        except BaseException:
            self.close()
            raise

    def _temporary(self, suffix: str):
        handle, name = _temporary(self.path, suffix, self.mode)
        self.temporaries.append(name)
        return handle

    def _write(self, handle, data) -> None:
        try:
            handle.write(data)
        except OSError as error:  # disk full, a folder that went away
            raise OptionError(f"cannot write {self.path}: {error.strerror or error}") from None

    def _npy_header(self, rows: int, size: int | None = None) -> bytes:
        """An NPY 1.0 header for ``rows`` rows, padded to ``size`` bytes (else to 64)."""
        fields = {
            "descr": np.lib.format.dtype_to_descr(self.dtype),
            "fortran_order": False,
            "shape": (rows, *self.trailing),
        }
        text = repr(fields).encode("latin1")
        body = 10 + len(text) + 1  # magic, version and length; the fields; a newline
        size = size or body + (-body) % 64
        padded = text + b" " * (size - body) + b"\n"
        return b"\x93NUMPY\x01\x00" + len(padded).to_bytes(2, "little") + padded

    def add(self, block: np.ndarray, factor: float | None = None) -> None:
        """Append a block of rows (any float dtype; stored in this writer's dtype; not to be
        changed until ``commit``), as it is, or multiplied by ``factor`` (the same for every
        block: the factor the run expects; ``commit`` corrects it where the run ends with
        another)."""
        block = np.require(block, dtype=self.dtype, requirements="C")
        if factor is not None:
            self.applied = factor
            if factor != 1.0:
                block = block * self.dtype.type(factor)
        if self.trailing is None:  # a 0-d array: one value, written whole at commit
            self.scalar = block
            return
        self.rows += len(block)
        self._write_later(self.spill or self.out, memoryview(block.reshape(-1).view(np.uint8)))

    def as_written(self, stored: float, factor: float) -> float:
        """The value that ``commit(factor)`` leaves in the file for a value ``stored`` as
        ``add`` took it: scaled by the correction in this writer's dtype (monotonic: the
        file's min and max are those of the values taken)."""
        if self.applied == factor:
            return stored
        return scaled_as_stored(self.dtype, factor / self.applied, stored)

    def _write_later(self, handle, data) -> None:
        """Hand ``data`` to the writing thread (started at the first block); at most two
        blocks wait. A failure of the thread is raised here, or by ``commit``."""
        import queue
        import threading

        self._raise_failure()
        if self.thread is None:
            self.queue = queue.Queue(maxsize=2)
            self.thread = threading.Thread(
                target=self._drain, name="losscli-grad-writer", daemon=True
            )
            self.thread.start()
        self.queue.put((handle, data))

    def _drain(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            if self.failure is None:
                try:
                    self._write(*item)
                except BaseException as error:  # raised again by add or commit
                    self.failure = error

    def _raise_failure(self) -> None:
        if self.failure is not None:
            failure, self.failure = self.failure, None
            raise failure

    def _flush(self) -> None:
        """Wait for the writing thread to write every block handed to it."""
        if self.thread is not None:
            self.queue.put(None)
            self.thread.join()
            self.thread = None
        self._raise_failure()

    def commit(self, factor: float = 1.0) -> None:
        """Scale every value by ``factor`` (where ``add`` applied another, by the ratio of
        the two), finish the file, and rename it into place."""
        self._flush()
        factor = 1.0 if self.applied == factor else factor / self.applied
        try:
            if self.trailing is None:
                value = np.asarray(self.scalar * self.dtype.type(factor), dtype=self.dtype)
                if self.suffix == ".npy":
                    np.save(self.out, value)
                else:
                    self._finish_from([value.reshape(1, 1)])
            elif self.suffix == ".npy":
                if factor != 1.0:
                    self._scale_in_place(self.out, self.header_bytes, factor)
                self.out.seek(0)
                self._write(self.out, self._npy_header(self.rows, self.header_bytes))
            else:
                self._finish_from(self._spilled(factor))
            self.out.close()
            os.replace(self.temporaries[0], self.path)
        except OSError as error:
            raise OptionError(f"cannot write {self.path}: {error.strerror or error}") from None
        self.temporaries.pop(0)

    def _blocks(self, handle, start: int):
        """(offset, values) for the raw rows of ``handle`` from byte ``start``, in blocks."""
        row_bytes = self.dtype.itemsize * int(np.prod(self.trailing))
        step = max(1, WRITE_BLOCK_BYTES // max(row_bytes, 1))
        for first in range(0, self.rows, step):
            count = min(step, self.rows - first)
            offset = start + first * row_bytes
            handle.seek(offset)
            data = handle.read(count * row_bytes)
            yield offset, np.frombuffer(data, dtype=self.dtype).reshape((count, *self.trailing))

    def _scale_in_place(self, handle, start: int, factor: float) -> None:
        for offset, values in self._blocks(handle, start):
            scaled = values * self.dtype.type(factor)
            handle.seek(offset)
            self._write(handle, memoryview(scaled.reshape(-1).view(np.uint8)))

    def _spilled(self, factor: float):
        self.spill.flush()
        for _, values in self._blocks(self.spill, 0):
            yield values * self.dtype.type(factor) if factor != 1.0 else values

    def _finish_from(self, blocks) -> None:
        if self.suffix == ".parquet":
            _write_parquet(self.out, blocks, self.columns)
        else:
            first = True
            for block in blocks:
                _write_text(self.out, block, self.columns if first else None, self.suffix)
                first = False

    def close(self) -> None:
        """Close and remove every temporary file not yet renamed into place."""
        if self.thread is not None:  # the blocks handed over are written (or failed) first
            self.failure = self.failure or RuntimeError("closed")
            self.queue.put(None)
            self.thread.join()
            self.thread = None
        for handle in (self.out, self.spill):
            if handle is not None and not handle.closed:
                handle.close()
        for name in self.temporaries:
            Path(name).unlink(missing_ok=True)
        self.temporaries.clear()


def _write_text(out, array: np.ndarray, names: list[str] | None, suffix: str) -> None:
    delimiter = "," if suffix == ".csv" else "\t" if suffix == ".tsv" else " "
    table = array.reshape(array.shape[0], -1) if array.ndim else array.reshape(1, 1)
    if names and suffix != ".txt":
        from losscli.io.text import is_number

        # A name that is a number would read back as a row of data.
        names = [f"grad_{name}" if is_number(name.strip()) else name for name in names]
        text = io.StringIO()
        csv.writer(text, delimiter=delimiter, lineterminator="\n").writerow(names)
        out.write(text.getvalue().encode("utf-8"))
    digits = 17 if array.dtype == np.float64 else 9  # enough to read every value back exactly
    np.savetxt(out, table, delimiter=delimiter, fmt=f"%.{digits}g")


def _write_parquet(out, blocks, names: list[str] | None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    try:
        for block in blocks:
            table = block.reshape(block.shape[0], -1) if block.ndim else block.reshape(1, 1)
            if writer is None:
                names = names or [f"grad_{i}" for i in range(table.shape[1])]
                columns = [
                    pa.array(np.ascontiguousarray(table[:, i])) for i in range(table.shape[1])
                ]
                batch = pa.Table.from_arrays(columns, names=names)
                writer = pq.ParquetWriter(out, batch.schema)
            else:
                columns = [
                    pa.array(np.ascontiguousarray(table[:, i])) for i in range(table.shape[1])
                ]
                batch = pa.Table.from_arrays(columns, names=names)
            writer.write_table(batch)
    finally:
        if writer is not None:
            writer.close()
