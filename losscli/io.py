"""Reading inputs into NumPy arrays and writing gradients to files.

Sources are paths or ``-`` (stdin). Formats are detected by extension, then by content:
NPY magic, ZIP (NPZ), ``PAR1`` (Parquet), else text (CSV, TSV or whitespace-separated).
Small text is parsed in Python so that every error names its line and column; large text
goes through pyarrow's multithreaded CSV reader, and falls back to the Python parser only to
locate an error it found.
"""

from __future__ import annotations

import csv
import io
import os
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from losscli.errors import InputError, OptionError

FORMATS = ("csv", "tsv", "npy", "npz", "parquet")
EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "txt",
    ".npy": "npy",
    ".npz": "npz",
    ".parquet": "parquet",
    ".pq": "parquet",
}
GRAD_OUT_EXTENSIONS = (".npy", ".csv", ".tsv", ".txt", ".parquet")
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"
PARQUET_MAGIC = b"PAR1"
# Text above this size is parsed by pyarrow; below it, Python's parser is faster to start.
LARGE_TEXT_BYTES = 1 << 20


@dataclass
class TextOrigin:
    """Where the rows of a text input came from, to turn a data row into a line number."""

    data: bytes | Path
    header: bool

    def line_of_row(self, row: int) -> int:
        """The 1-based line number of 0-based data row ``row`` (blank lines are skipped)."""
        data = self.data.read_bytes() if isinstance(self.data, Path) else self.data
        seen = -1 if self.header else 0
        for number, line in enumerate(data.splitlines(), start=1):
            if not line.strip():
                continue
            if seen == row:
                return number
            seen += 1
        return number


@dataclass
class InputArray:
    """One input as read: its array, where it came from, and its column names if any."""

    source: str
    array: np.ndarray
    header: list[str] | None = None
    origin: TextOrigin | None = field(default=None, repr=False)

    def where(self, index) -> str:
        """Where element ``index`` (an int row or a tuple) is, for error messages."""
        index = tuple(int(i) for i in np.atleast_1d(index))
        row = index[0] if index else 0
        text = f"{self.source}, row {row + 1}"
        if self.origin is not None:
            text += f" (line {self.origin.line_of_row(row)}"
            if len(index) > 1:
                text += f", column {index[1] + 1}"
            text += ")"
        elif len(index) > 1:
            text += f", index {list(index)}"
        return text


def parse_columns(text: str | None) -> list[str] | None:
    """Split a --pred-cols / --target-cols value into column tokens."""
    if text is None:
        return None
    tokens = [t.strip() for t in text.split(",")]
    if not all(tokens):
        raise OptionError(f"column list {text!r} has an empty entry; expected names or indices")
    return tokens


def read_input(
    source: str,
    *,
    input_format: str | None = None,
    delimiter: str | None = None,
    header: bool | None = None,
    columns: list[str] | None = None,
    allow_names: bool = False,
    float_dtype=None,
    stdin=None,
) -> InputArray:
    """Read one source (a path, ``path.npz:key`` or ``-``) into an InputArray.

    ``columns`` selects table columns by name or 0-based index (one column gives a 1-D array).
    ``allow_names`` keeps non-numeric text cells as strings (class names) instead of failing.
    ``float_dtype`` lets the large-text reader parse straight into that dtype (the compute
    dtype) instead of float64.
    """
    key = None
    if source == "-":
        stream = stdin if stdin is not None else sys.stdin.buffer
        if stdin is None and sys.stdin.isatty():
            raise InputError(
                "'-' reads from stdin, but stdin is a terminal; pipe the data in "
                "(python predict.py | losscli ...) or pass a file path"
            )
        data = stream.read()
        fmt = input_format or _sniff(data[:8])
        label = "<stdin>"
        raw: bytes | Path = data
    else:
        path = _source_path(source)
        if path != Path(source) and path.is_file():
            key = source.rsplit(":", 1)[1]
        else:
            path = Path(source)
        label = source
        head = _head(path, label)
        fmt = input_format or EXTENSIONS.get(path.suffix.lower()) or _sniff(head)
        raw = path
    if fmt == "npy":
        result = InputArray(label, _read_npy(raw, label))
    elif fmt == "npz":
        result = InputArray(label, _read_npz(raw, label, key))
    elif fmt == "parquet":
        return _read_parquet(raw, label, columns, allow_names)
    else:
        if fmt == "tsv" and delimiter is None:
            delimiter = "\t"
        text = _read_text(raw, label, delimiter, header, allow_names, float_dtype)
        return _finish_text(text, columns, allow_names)
    if columns is not None:
        result = _select_array_columns(result, columns)
    if result.array.size == 0:
        raise InputError(f"{label}: has no data rows")
    return result


def _sniff(head: bytes) -> str:
    if head.startswith(NPY_MAGIC):
        return "npy"
    if head.startswith(ZIP_MAGIC):
        return "npz"
    if head.startswith(PARQUET_MAGIC):
        return "parquet"
    return "txt"


def _os_error(label: str, error: OSError) -> InputError:
    reason = error.strerror or str(error)
    return InputError(f"{label}: cannot read: {reason}")


def _head(path: Path, label: str, size: int = 8) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(size)
    except OSError as error:
        raise _os_error(label, error) from None


def _invalid(label: str, kind: str, error: Exception | None = None) -> InputError:
    detail = f" ({error})" if error is not None and str(error) else ""
    return InputError(f"{label}: not a valid {kind} file{detail}")


def _checked_numeric(array: np.ndarray, label: str, kind: str) -> np.ndarray:
    if array.dtype.hasobject:
        raise InputError(f"{label}: not a safe {kind} file: it holds pickled Python objects")
    if array.dtype.kind not in "biuf":
        raise InputError(f"{label}: {kind} array has dtype {array.dtype}; expected numbers")
    return array


def _read_npy(raw: bytes | Path, label: str) -> np.ndarray:
    try:
        if isinstance(raw, Path):
            array = np.load(raw, mmap_mode="r", allow_pickle=False)
        else:
            array = np.load(io.BytesIO(raw), allow_pickle=False)
    except ValueError as error:
        if "pickle" in str(error) or "Python objects" in str(error):
            raise InputError(
                f"{label}: not a safe NPY file: it holds pickled Python objects"
            ) from None
        raise _invalid(label, "NPY", error) from None
    except (OSError, EOFError) as error:
        raise _invalid(label, "NPY", error) from None
    if not isinstance(array, np.ndarray):
        raise _invalid(label, "NPY")
    return _checked_numeric(array, label, "NPY")


def _read_npz(raw: bytes | Path, label: str, key: str | None) -> np.ndarray:
    try:
        archive = np.load(raw if isinstance(raw, Path) else io.BytesIO(raw), allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise _invalid(label, "NPZ", error) from None
    if not hasattr(archive, "files"):
        raise _invalid(label, "NPZ")
    with archive:
        keys = list(archive.files)
        if key is None:
            if len(keys) != 1:
                raise InputError(
                    f"{label}: holds {len(keys)} arrays ({', '.join(keys) or 'none'}); "
                    f"name one as {label}:KEY"
                )
            key = keys[0]
        if key not in keys:
            raise InputError(f"{label}: no array {key!r}; available: {', '.join(keys)}")
        try:
            array = archive[key]
        except ValueError as error:
            if "pickle" in str(error):
                raise InputError(
                    f"{label}: not a safe NPZ file: array {key!r} holds pickled Python objects"
                ) from None
            raise _invalid(label, "NPZ", error) from None
        except Exception as error:  # zipfile and zlib raise several unrelated types
            raise _invalid(label, "NPZ", error) from None
    return _checked_numeric(array, f"{label}:{key}", "NPZ")


def _column_indices(
    tokens: list[str], names: list[str] | None, ncols: int, label: str
) -> list[int]:
    indices = []
    for token in tokens:
        if names is not None and token in names:
            indices.append(names.index(token))
        elif token.lstrip("-").isdigit() and 0 <= int(token) < ncols:
            indices.append(int(token))
        else:
            available = ", ".join(names) if names else f"indices 0..{ncols - 1}"
            raise OptionError(f"{label}: no column {token!r}; available: {available}")
    return indices


def _select_array_columns(result: InputArray, tokens: list[str]) -> InputArray:
    array = result.array
    if array.ndim != 2:
        raise OptionError(
            f"{result.source}: column selection needs a 2-D table; this array has shape "
            f"{tuple(array.shape)}"
        )
    indices = _column_indices(tokens, result.header, array.shape[1], result.source)
    return _with_columns(result, indices, tokens)


def _with_columns(result: InputArray, indices: list[int], tokens: list[str]) -> InputArray:
    selected = result.array[:, indices[0]] if len(indices) == 1 else result.array[:, indices]
    header = [result.header[i] for i in indices] if result.header else None
    return InputArray(f"{result.source}[{','.join(tokens)}]", selected, header, result.origin)


# ---------------------------------------------------------------- text


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _detect_delimiter(first_line: str) -> str | None:
    if "\t" in first_line:
        return "\t"
    if "," in first_line:
        return ","
    if ";" in first_line:
        return ";"
    return None


def _split_rows(text: str, delimiter: str | None) -> list[tuple[int, list[str]]]:
    """Non-blank lines as (line number, cells)."""
    numbered = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if delimiter is None:
        return [(n, line.split()) for n, line in numbered]
    reader = csv.reader((line for _, line in numbered), delimiter=delimiter)
    return [(n, [cell.strip() for cell in cells]) for (n, _), cells in zip(numbered, reader)]


def _has_header(rows: list[tuple[int, list[str]]]) -> bool:
    """A first row is a header when it is not numeric where the second row is (or is alone)."""
    first = rows[0][1]
    if all(_is_number(c) for c in first):
        return False
    if len(rows) == 1:
        return True
    second = rows[1][1]
    return any(not _is_number(a) and _is_number(b) for a, b in zip(first, second))


def _decode(data: bytes, label: str) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputError(
            f"{label}: not UTF-8 text (byte {error.start}) and not an NPY, NPZ or Parquet file"
        ) from None
    return text.removeprefix("\ufeff")


def _first_lines(text: str, count: int) -> list[str]:
    lines = []
    for line in text.splitlines():
        if line.strip():
            lines.append(line)
            if len(lines) == count:
                break
    return lines


@dataclass
class _ParsedText:
    names: list[str] | None
    array: np.ndarray
    label: str
    origin: TextOrigin


def _read_text(raw, label, delimiter, header, allow_names, float_dtype) -> _ParsedText:
    if isinstance(raw, Path):
        head_bytes = _head(raw, label, 65536)
        size = raw.stat().st_size
    else:
        head_bytes, size = raw[:65536], len(raw)
    if size > len(head_bytes) and b"\n" in head_bytes:
        head_bytes = head_bytes[: head_bytes.rindex(b"\n")]
    head = _first_lines(_decode(head_bytes, label), 2)
    if not head:
        raise InputError(f"{label}: is empty; it has no data rows")
    if delimiter is None:
        delimiter = _detect_delimiter(head[0])
    elif delimiter in ("\\t", "tab"):
        delimiter = "\t"
    if header is None:
        header = _has_header(_split_rows("\n".join(head), delimiter))
    origin = TextOrigin(raw, header)
    if size > LARGE_TEXT_BYTES and (delimiter is not None or len(head[0].split()) == 1):
        first_cells = _split_rows(head[0], delimiter)[0][1]
        parsed = _read_text_arrow(
            raw, delimiter or ",", header, len(first_cells), allow_names, float_dtype
        )
        if parsed is not None:
            return _ParsedText(first_cells if header else None, parsed, label, origin)
    data = raw.read_bytes() if isinstance(raw, Path) else raw
    names, array = _parse_text_python(_decode(data, label), label, delimiter, header, allow_names)
    return _ParsedText(names, array, label, origin)


def _finish_text(parsed: _ParsedText, columns: list[str] | None, allow_names: bool) -> InputArray:
    array = parsed.array
    result = InputArray(parsed.label, array, parsed.names, parsed.origin)
    if columns is not None:
        indices = _column_indices(columns, parsed.names, array.shape[1], parsed.label)
        result = _with_columns(result, indices, columns)
    elif array.shape[1] == 1:
        result.array = array[:, 0]
    if result.array.dtype.kind in "OU":
        result.array = _numeric_or_names(result, allow_names)
    return result


def _numeric_or_names(result: InputArray, allow_names: bool) -> np.ndarray:
    """Cells as float64 where every cell is a number; else the strings (class names)."""
    cells = result.array
    try:
        return cells.astype(np.float64)
    except ValueError:
        pass
    if allow_names and cells.ndim == 1:
        return cells.astype(str)
    for index in np.ndindex(cells.shape):
        cell = str(cells[index])
        if not _is_number(cell):
            index = index if len(index) > 1 else (index[0], 0)
            what = "an empty cell" if cell == "" else f"{cell!r}"
            raise InputError(f"{result.where(index)}: found {what}; expected a number")
    raise InputError(f"{result.source}: cells that are not numbers")


def _parse_text_python(text, label, delimiter, header, allow_names):
    rows = _split_rows(text, delimiter)
    names = None
    if header:
        names = rows[0][1]
        rows = rows[1:]
    if not rows:
        raise InputError(f"{label}: has no data rows" + (" (only a header)" if header else ""))
    width = len(names) if names is not None else len(rows[0][1])
    for line, cells in rows:
        if len(cells) != width:
            raise InputError(f"{label}, line {line}: found {len(cells)} columns, expected {width}")
    try:
        return names, np.array([[float(c) for c in r] for _, r in rows])
    except ValueError:
        pass
    if not allow_names:
        for line, cells in rows:
            for column, cell in enumerate(cells, start=1):
                if not _is_number(cell):
                    what = "an empty cell" if cell == "" else f"{cell!r}"
                    name = f" ({names[column - 1]})" if names else ""
                    raise InputError(
                        f"{label}, line {line}, column {column}{name}: found {what}; "
                        "expected a number"
                    )
    return names, np.array([cells for _, cells in rows], dtype=object)


def _read_text_arrow(raw, delimiter, header, width, allow_names, float_dtype):
    """Parse large text with pyarrow; None when it finds a problem for Python to locate.

    Float inputs are parsed straight into ``float_dtype``; targets keep the types pyarrow
    infers (int64 class indices, or strings for class names).
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    names = [f"c{i}" for i in range(width)]
    types = {}
    if not allow_names:
        arrow_type = pa.float32() if float_dtype == np.float32 else pa.float64()
        types = {name: arrow_type for name in names}
    try:
        table = pacsv.read_csv(
            str(raw) if isinstance(raw, Path) else pa.BufferReader(raw),
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=int(header)),
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
            convert_options=pacsv.ConvertOptions(
                column_types=types, null_values=[], strings_can_be_null=False
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None
    if table.num_rows == 0:
        return None
    kinds = {_arrow_kind(pa, column.type) for column in table.columns}
    if kinds == {"int"}:
        dtype = np.int64
    elif kinds <= {"int", "float"}:
        dtype = np.float32 if float_dtype == np.float32 and not allow_names else np.float64
    elif allow_names and width == 1:
        column = table.column(0).to_numpy(zero_copy_only=False).astype(str)
        return np.char.strip(column)[:, None]
    else:
        return None
    array = np.empty((table.num_rows, width), dtype=dtype)
    for i, column in enumerate(table.columns):
        _fill_from_arrow(array[:, i], column)
    del table
    pa.default_memory_pool().release_unused()  # hand the parse buffers back before torch runs
    return array


_ARROW_NUMPY = {"double": np.float64, "float": np.float32, "halffloat": np.float16}


def _fill_from_arrow(out: np.ndarray, column) -> None:
    """Copy a numeric Arrow column without nulls into ``out``, chunk by chunk.

    The values are read from the Arrow buffers directly: ``Array.to_numpy`` would import
    pandas, which costs more than parsing a large CSV.
    """
    start = 0
    for chunk in column.chunks:
        name = str(chunk.type)
        dtype = np.dtype(_ARROW_NUMPY.get(name, name))
        values = np.frombuffer(
            chunk.buffers()[1], dtype=dtype, count=len(chunk), offset=chunk.offset * dtype.itemsize
        )
        out[start : start + len(chunk)] = values
        start += len(chunk)


def _arrow_kind(pa, arrow_type) -> str:
    if pa.types.is_integer(arrow_type):
        return "int"
    return "float" if pa.types.is_floating(arrow_type) else "other"


# ---------------------------------------------------------------- parquet


def _read_parquet(raw, label, columns, allow_names) -> InputArray:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        source = raw if isinstance(raw, Path) else pa.BufferReader(raw)
        schema = pq.read_schema(source)
    except (pa.ArrowException, OSError) as error:
        raise _invalid(label, "Parquet", error) from None
    names = list(schema.names)
    if columns is not None:
        chosen = [names[i] for i in _column_indices(columns, names, len(names), label)]
    else:
        chosen = [f.name for f in schema if _arrow_kind(pa, f.type) != "other"]
        if not chosen:
            raise InputError(f"{label}: has no numeric columns (columns: {', '.join(names)})")
    try:
        source = raw if isinstance(raw, Path) else pa.BufferReader(raw)
        table = pq.read_table(source, columns=chosen)
    except (pa.ArrowException, OSError) as error:
        raise _invalid(label, "Parquet", error) from None
    if table.num_rows == 0:
        raise InputError(f"{label}: has no data rows")
    shown = f"{label}[{','.join(columns)}]" if columns is not None else label
    arrays = []
    for name, column in zip(chosen, table.columns):
        if column.null_count:
            raise InputError(f"{shown}: column {name!r} has {column.null_count} missing values")
        if _arrow_kind(pa, column.type) != "other":
            values = np.empty(len(column), dtype=np.float64)
            _fill_from_arrow(values, column)
            arrays.append(values)
        elif pa.types.is_boolean(column.type):
            arrays.append(column.to_numpy(zero_copy_only=False).astype(np.float64))
        elif allow_names and len(chosen) == 1 and pa.types.is_string(column.type):
            arrays.append(column.to_numpy(zero_copy_only=False).astype(str))
        else:
            raise InputError(f"{shown}: column {name!r} has type {column.type}; expected numbers")
    array = arrays[0] if len(arrays) == 1 else np.column_stack(arrays)
    return InputArray(shown, array, chosen)


# ---------------------------------------------------------------- gradients out


def _source_path(source: str) -> Path:
    """The file behind a source, without an NPZ ``:key``."""
    path = Path(source)
    if not path.exists() and ":" in source:
        return Path(source.rsplit(":", 1)[0])
    return path


def check_grad_out(path: str, input_paths: list[str]) -> Path:
    """Refuse a --grad-out that would overwrite an input or cannot be written, before any work."""
    target = Path(path)
    if target.suffix.lower() not in GRAD_OUT_EXTENSIONS:
        raise OptionError(
            f"--grad-out {path}: unknown extension; use one of {', '.join(GRAD_OUT_EXTENSIONS)}"
        )
    for source in input_paths:
        if source != "-" and _source_path(source).resolve() == target.resolve():
            raise OptionError(f"--grad-out {path} is also an input; choose another path")
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise OptionError(f"--grad-out {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise OptionError(f"--grad-out {path}: folder {folder} is not writable")
    if target.is_dir():
        raise OptionError(f"--grad-out {path} is a directory")
    return target


def check_grad_out_shape(path: Path, shape: tuple[int, ...]) -> None:
    """Text and Parquet gradients hold at most two dimensions."""
    if path.suffix.lower() != ".npy" and len(shape) > 2:
        raise OptionError(
            f"--grad-out {path}: a gradient of shape {shape} needs .npy "
            "(text and Parquet hold 1-D or 2-D arrays)"
        )


def write_array(path: Path, array: np.ndarray, columns: list[str] | None = None) -> None:
    """Write ``array`` to ``path`` by extension, atomically: a temporary file, then a rename."""
    suffix = path.suffix.lower()
    folder = path.parent if str(path.parent) else Path(".")
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(handle, "wb") as out:
            if suffix == ".npy":
                np.save(out, np.ascontiguousarray(array))
            elif suffix == ".parquet":
                _write_parquet(out, array, columns)
            else:
                delimiter = "," if suffix == ".csv" else "\t" if suffix == ".tsv" else " "
                table = array.reshape(array.shape[0], -1) if array.ndim else array.reshape(1, 1)
                if columns and suffix != ".txt":
                    out.write((delimiter.join(columns) + "\n").encode())
                np.savetxt(out, table, delimiter=delimiter, fmt="%.9g")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _write_parquet(out, array: np.ndarray, columns: list[str] | None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = array.reshape(array.shape[0], -1)
    names = columns or [f"grad_{i}" for i in range(table.shape[1])]
    pq.write_table(pa.table({n: table[:, i] for i, n in enumerate(names)}), out)
