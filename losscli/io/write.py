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


def _identities(path: Path) -> set[tuple[int, int]]:
    found = set()
    for follow in (True, False):
        try:
            info = path.stat() if follow else path.lstat()
        except OSError:
            continue
        found.add((info.st_dev, info.st_ino))
    return found


def check_output_path(option: str, path: str, read: dict[tuple[int, int], str]) -> Path:
    """Refuse an output path that would replace a file the run reads, or cannot be written."""
    target = Path(path)
    clash = next((read[i] for i in _identities(target) if i in read), None)
    if clash is not None:
        raise OptionError(
            f"{option} {path} is a file this run reads ({clash}); choose another path"
        )
    if target.suffix.lower() not in GRAD_OUT_EXTENSIONS:
        raise OptionError(
            f"{option} {path}: unknown extension; use one of {', '.join(GRAD_OUT_EXTENSIONS)}"
        )
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


def write_array(path: Path, array: np.ndarray, columns: list[str] | None = None) -> None:
    """Write ``array`` to ``path`` by extension, atomically: a temporary file, then a rename."""
    suffix = path.suffix.lower()
    folder = path.parent if str(path.parent) else Path(".")
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode) & 0o777  # never setuid/setgid/sticky
    except OSError:
        mode = _new_file_mode()
    try:
        # A short temporary name: the final name may already be as long as names can be.
        handle, temporary = tempfile.mkstemp(
            prefix=f".{path.name[:32]}.", suffix=".tmp", dir=folder
        )
    except OSError as error:
        raise OptionError(f"cannot write {path}: {error.strerror or error}") from None
    try:
        os.fchmod(handle, mode)
        with os.fdopen(handle, "wb") as out:
            width = int(np.prod(array.shape[1:])) if array.ndim > 1 else 1
            names = None
            if columns is not None and len(columns) == width:
                names = unique_names([_printable_name(c) for c in columns])
            if suffix == ".npy":
                np.save(out, np.require(array, requirements="C"))
            elif suffix == ".parquet":
                _write_parquet(out, array, names)
            else:
                _write_text(out, array, names, suffix)
        os.replace(temporary, path)
    except OSError as error:  # disk full, a name too long, a folder that went away
        Path(temporary).unlink(missing_ok=True)
        raise OptionError(f"cannot write {path}: {error.strerror or error}") from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


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


def _write_parquet(out, array: np.ndarray, names: list[str] | None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = array.reshape(array.shape[0], -1) if array.ndim else array.reshape(1, 1)
    names = names or [f"grad_{i}" for i in range(table.shape[1])]
    columns = [pa.array(np.ascontiguousarray(table[:, i])) for i in range(table.shape[1])]
    pq.write_table(pa.Table.from_arrays(columns, names=names), out)
