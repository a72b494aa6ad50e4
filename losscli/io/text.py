"""Text tables (CSV, TSV, whitespace-separated): one meaning whatever the size.

Every decision (delimiter, header, pandas index column) is made once, from whole rows at the
start of the file, by the same code for every size. The data rows are then parsed by the
Python parser, or, for large files, by pyarrow's multithreaded reader, which is used only
where its result is the Python parser's: it is given the rows after the header (never a
byte prefix), it splits at every delimiter, number cells are read into float64 by both with
the same correctly rounded conversion, and whatever pyarrow would read differently (a quote
character anywhere, whitespace-only lines, empty cells, names with spaces, a cell it
rejects) sends the file to the Python parser instead, which also locates every error by
line and column. ``tests/test_io.py`` checks the two agree on generated tables.
"""

from __future__ import annotations

import csv
import math
import re
import sys
from dataclasses import dataclass

import numpy as np

from losscli.errors import InputError
from losscli.io.columns import resolve_columns
from losscli.io.common import InputArray, Request, narrow
from losscli.io.sources import FIRST_CHUNK, Source

# Text above this size is parsed by pyarrow; below it, Python's parser is faster to start.
LARGE_TEXT_BYTES = 1 << 20
BOM = b"\xef\xbb\xbf"
LINE_BREAK = re.compile(rb"\r\n|\r|\n")
NONBLANK = re.compile(rb"[^ \t\n\r\x0b\x0c]")
# Tables wider than this are parsed in Python: pyarrow's cost per column outgrows the data.
ARROW_MAX_COLUMNS = 4096
# Bytes of text pyarrow parses per block: bounds its working memory.
ARROW_BLOCK_BYTES = 1 << 24
# Rows the Python parser gathers before turning them into one float block.
PYTHON_BLOCK_ROWS = 1 << 16
# The number syntax of every text input: decimal, exponent, inf/infinity, nan (pyarrow's
# "nan(...)" form too). Underscores, hex and non-ASCII digits are not numbers.
NUMBER = re.compile(
    r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf(?:inity)?|nan(?:\([0-9A-Za-z_]*\))?)",
    re.IGNORECASE | re.ASCII,
)
INDEX_NAMES = ("index", "unnamed: 0")
# Rows like "0,5": two columns, or one number written with a decimal comma.
DECIMAL_COMMA = re.compile(r"\s*-?\d+,\d+\s*")

csv.field_size_limit(sys.maxsize)


def is_number(cell: str) -> bool:
    """Whether a (stripped) text cell is a number."""
    return NUMBER.fullmatch(cell) is not None


def to_number(cell: str) -> float:
    """A number cell's value (``nan(...)`` is NaN)."""
    return float("nan") if cell.endswith(")") else float(cell)


def _cell_text(cell: str) -> str:
    return "an empty cell" if cell == "" else repr(cell)


@dataclass
class Layout:
    """What was decided about a text table before its data rows are parsed."""

    delimiter: str | None
    names: list[str] | None
    width: int
    data_offset: int
    header_line: int
    index_column: int | None
    notes: list[str]


def _decode(line: bytes, label: str, number: int) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(
            f"{label}, line {number}: not UTF-8 text and not an NPY, NPZ or Parquet file"
        ) from None


def _breaks(segment: bytes) -> int:
    """How many line breaks (\\n, \\r\\n or \\r) a run of bytes holds."""
    return segment.count(b"\n") + segment.count(b"\r") - segment.count(b"\r\n")


def nonblank_lines(data: bytes, first_number: int = 1, start: int = 0):
    """(line number, line, end offset, whether a line break ends it) for every line of
    ``data[start:]`` that is not blank. Runs of blank lines are skipped by byte searches, so a
    file of blank lines costs no Python loop per line."""
    pos, number, size = start, first_number - 1, len(data)
    while True:
        found = NONBLANK.search(data, pos)
        if found is None:
            return
        line_start = max(
            data.rfind(b"\n", pos, found.start()), data.rfind(b"\r", pos, found.start())
        )
        line_start = pos if line_start < 0 else line_start + 1
        number += _breaks(data[pos:line_start]) + 1
        end = LINE_BREAK.search(data, found.start())
        stop, pos = (end.start(), end.end()) if end else (size, size)
        yield number, data[line_start:stop], pos, end is not None


def _first_lines(source: Source, count: int) -> tuple[list[tuple[int, int, str]], bool]:
    """The first ``count`` non-blank lines, whole, as (line number, end offset, text).

    Reads as far as needed to have whole lines, however long they are (each read doubles
    what is held). Also says whether the file starts with a UTF-8 byte order mark.
    """
    handle = source.file
    handle.seek(0)
    buffer = handle.read(FIRST_CHUNK)
    bom = buffer.startswith(BOM)
    eof, checked = False, 0
    while True:
        zero = buffer.find(b"\0", checked)
        checked = len(buffer)
        if zero >= 0:
            line = _breaks(buffer[:zero]) + 1
            raise InputError(
                f"{source.label}, line {line}: not text (a NUL byte) and not "
                "an NPY, NPZ or Parquet file"
            )
        lines = []
        for number, raw, end, ended in nonblank_lines(buffer, start=len(BOM) if bom else 0):
            # A line is whole when a break ends it; a final "\r" may be the first half of
            # "\r\n", so it waits for the next byte (unless the file ends there).
            if not eof and (not ended or (end == len(buffer) and buffer.endswith(b"\r"))):
                break
            lines.append((number, end, _decode(raw, source.label, number)))
            if len(lines) == count:
                return lines, bom
        if eof:
            return lines, bom
        chunk = handle.read(max(FIRST_CHUNK, len(buffer)))
        eof = not chunk
        buffer += chunk


def split_row(line: str, delimiter: str | None, where: str) -> list[str]:
    """One line's cells, stripped: csv quoting for a delimiter, else whitespace-separated.
    ``where`` names the line in the error for malformed quoting."""
    if delimiter is None:
        return line.split()
    try:
        cells = next(csv.reader([line], delimiter=delimiter, strict=True))
    except csv.Error as error:
        raise InputError(f"{where}: malformed quoting ({error}); quote whole cells") from None
    return [cell.strip() for cell in cells]


def detect_delimiter(first_line: str) -> str | None:
    for delimiter in ("\t", ",", ";"):
        if delimiter in first_line:
            return delimiter
    return None


def _counting_row(row: list[str]) -> bool:
    """A row that is exactly 0,1,...,C-1 (C >= 2): what pandas writes as a header of numbers."""
    return len(row) >= 2 and row == [str(i) for i in range(len(row))]


def _numbered_header(first: list[str], second: list[str] | None) -> bool:
    """A first row that is exactly 0,1,...,C-1 above a row with a non-integral number."""
    if not _counting_row(first) or second is None:
        return False
    numbers = [to_number(c) for c in second if is_number(c)]
    return any(not float(v).is_integer() for v in numbers if np.isfinite(v))


def _layout(
    source: Source,
    delimiter: str | None,
    header: bool | None,
    names_read: bool,
    one_column: str | None = None,
) -> Layout:
    """Delimiter, header and index column, decided from the first two non-blank rows.
    ``names``: the file may be class names, so a lone row of text is data, not a header."""
    label = source.label
    lines, bom = _first_lines(source, 2)
    if not lines:
        raise InputError(f"{label}: is empty; it has no data rows")
    detected = delimiter is None
    if detected:
        delimiter = detect_delimiter(lines[0][2])
        first_line = lines[0][2]
        if delimiter is None and (len(first_line.split()) <= 1 or '"' in first_line):
            delimiter = one_column
    rows = [split_row(text, delimiter, f"{label}, line {number}") for number, _, text in lines]
    first, second = rows[0], rows[1] if len(rows) > 1 else None
    notes = []
    if header is None:
        header = not all(is_number(c) for c in first) and (
            (second is None and not names_read)
            or (
                second is not None
                and any(not is_number(a) and is_number(b) for a, b in zip(first, second))
            )
        )
        if not header and _numbered_header(first, second):
            header = True
            notes.append(
                f"{label}: line {lines[0][0]} ({','.join(first)}) reads as a header of column "
                f"numbers; write {label}?header=no to read it as data"
            )
        elif not header and _counting_row(first):
            notes.append(
                f"{label}: line {lines[0][0]} ({','.join(first)}) is read as data, but it may be "
                f"a header of column numbers; if it is, write {label}?header=yes"
            )
    if detected and delimiter == "," and all(DECIMAL_COMMA.fullmatch(t) for _, _, t in lines):
        notes.append(
            f"{label}: rows such as {lines[0][2]!r} are read as two columns split at the comma; "
            f"if the comma is a decimal point, write the numbers with '.' instead"
        )
    if header:
        names = first
        data_offset = lines[0][1]
        header_line = lines[0][0]
    else:
        names = None
        data_offset = len(BOM) if bom else 0
        header_line = 0
    index_column = None
    if names and len(names) > 1 and (names[0] == "" or names[0].lower() in INDEX_NAMES):
        index_column = 0
    return Layout(delimiter, names, len(first), data_offset, header_line, index_column, notes)


def _line_mapper(source: Source, header_line: int):
    """row -> line number, by scanning the file again through its one descriptor; used only
    to place an error, so a large file pays for it only when something is wrong."""
    cache: dict[str, list[int]] = {}

    def line_of_row(row: int) -> int:
        if "lines" not in cache:
            source.file.seek(0)
            data = source.file.read()
            cache["lines"] = [n for n, *_ in nonblank_lines(data) if n > header_line]
        lines = cache["lines"]
        return lines[row] if 0 <= row < len(lines) else (lines[-1] if lines else 1)

    return line_of_row


class _Columns:
    """The parsed data columns that were asked for (``wanted``, by file index), in row blocks.

    Numbers are in 2-D blocks, one column per wanted column, kept in float32 when every
    request wants float32 and the block holds no value beyond float32's range (else float64).
    Columns that may hold class names (``names``) also keep their cells as text; for every
    column, the first cell that is not a number is remembered.
    """

    def __init__(self, wanted: list[int], float32: bool, names: set[int]):
        self.wanted = wanted
        self.position = {index: j for j, index in enumerate(wanted)}
        self.float32 = float32
        self.names = names
        self.rows = 0
        self.blocks: list[np.ndarray] = []
        self.text: dict[int, list[np.ndarray]] = {}
        # For a column that is not all numbers: (row, cell) of the first cell that is not.
        self.first_text: dict[int, tuple[int, str]] = {}

    def add(self, block: np.ndarray, text: dict[int, list[str]], first: dict) -> None:
        """Add a float64 block of rows (NaN where a cell is text), the cells of the name
        columns, and (block row, cell) of the first text cell of each column that has one."""
        for index, (row, cell) in first.items():
            self.first_text.setdefault(index, (self.rows + row, cell))
        for index, cells in text.items():
            self.text.setdefault(index, []).append(np.array(cells, dtype=str))
        self.blocks.append(narrow(block, np.float32) if self.float32 else block)
        self.rows += len(block)

    def column(self, index: int) -> np.ndarray:
        if index in self.first_text:
            parts = self.text[index]
        else:
            parts = [block[:, self.position[index]] for block in self.blocks]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def table(self, chosen: list[int], float_dtype) -> np.ndarray:
        """The numbers of ``chosen`` as one (rows, len(chosen)) array."""
        narrow_all = float_dtype == np.float32 and all(b.dtype == np.float32 for b in self.blocks)
        dtype = np.float32 if narrow_all else np.float64
        if len(self.blocks) == 1 and chosen == self.wanted:
            return self.blocks[0].astype(dtype, copy=False)
        columns = [self.position[i] for i in chosen]
        out = np.empty((self.rows, len(chosen)), dtype=dtype)
        start = 0
        for block in self.blocks:
            out[start : start + len(block)] = block if chosen == self.wanted else block[:, columns]
            start += len(block)
        return out


def _first_text(cells: list[str]) -> tuple[int, str] | None:
    return next(((r, c) for r, c in enumerate(cells) if not is_number(c)), None)


def _parse_python(source: Source, layout: Layout, columns: _Columns) -> None:
    """Parse every data row in Python, converting cells as it goes into float blocks of
    PYTHON_BLOCK_ROWS rows (no table of strings or of Python floats is kept)."""
    label = source.label
    source.file.seek(layout.data_offset)
    data = source.file.read()
    wanted, width = columns.wanted, layout.width
    blocks: list[np.ndarray] = []
    rows: list[list[float]] = []
    count = 0
    text: dict[int, list[str]] = {index: [] for index in columns.names}
    first: dict[int, tuple[int, str]] = {}
    # Data starts on the line after the header (line 1 without one).
    for number, raw, *_ in nonblank_lines(data, layout.header_line + 1):
        if b"\0" in raw:
            raise InputError(
                f"{label}, line {number}: not text (a NUL byte) and not an NPY, NPZ or Parquet file"
            )
        cells = split_row(_decode(raw, label, number), layout.delimiter, f"{label}, line {number}")
        if len(cells) != width:
            raise InputError(
                f"{label}, line {number}: found {len(cells)} columns, expected {width}"
            )
        values = []
        for index in wanted:
            cell = cells[index]
            if is_number(cell):
                values.append(to_number(cell))
            else:
                values.append(math.nan)
                first.setdefault(index, (count, cell))
        for index, kept in text.items():
            kept.append(cells[index])
        rows.append(values)
        count += 1
        if len(rows) == PYTHON_BLOCK_ROWS:
            blocks.append(np.array(rows, dtype=np.float64).reshape(len(rows), len(wanted)))
            rows = []
    if not count:
        only = " (only a header)" if layout.names is not None else ""
        raise InputError(f"{label}: has no data rows{only}")
    if rows:
        blocks.append(np.array(rows, dtype=np.float64).reshape(len(rows), len(wanted)))
    if columns.float32 and any(narrow(b, np.float32).dtype == np.float64 for b in blocks):
        columns.float32 = False  # a value beyond float32's range: the table keeps float64
    texts = {i: cells for i, cells in text.items() if i in first}
    for block in blocks:
        columns.add(block, {}, {})
    columns.text = {i: [np.array(cells, dtype=str)] for i, cells in texts.items()}
    columns.first_text = first


def _parse_arrow(
    source: Source, layout: Layout, wanted: list[int], float32: bool, names_ok: set[int]
) -> _Columns | None:
    """The data rows parsed by pyarrow, block by block; None where the Python parser must
    read the file instead."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    whitespace = layout.delimiter is None
    if (whitespace and layout.width != 1) or layout.width > ARROW_MAX_COLUMNS:
        return None
    column_names = [f"c{i}" for i in range(layout.width)]
    for attempt in ("numbers", "names"):
        if attempt == "names" and not names_ok:
            return None
        # pyarrow splits at every delimiter (no quoting). Where the data holds no quote
        # character, its rows are the Python parser's; a quote anywhere sends the file to
        # the Python parser: in a number cell it fails to convert, and the columns not asked
        # for are read as text to be searched for one.
        types = {name: pa.string() for name in column_names}
        for index in wanted:
            as_text = attempt == "names" and index in names_ok
            types[column_names[index]] = pa.string() if as_text else pa.float64()
        source.file.seek(layout.data_offset)
        parsed = _Columns(wanted, float32, names_ok)
        reader = None
        try:
            reader = pacsv.open_csv(
                source.file,
                read_options=pacsv.ReadOptions(
                    column_names=column_names, block_size=ARROW_BLOCK_BYTES
                ),
                parse_options=pacsv.ParseOptions(
                    delimiter=layout.delimiter or "\t",
                    quote_char=False,
                    double_quote=False,
                    escape_char=False,
                    newlines_in_values=False,
                    ignore_empty_lines=True,
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types=types,
                    null_values=[],
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
            for batch in reader:
                if not _add_batch(pa, batch, parsed, whitespace):
                    return None
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            continue
        finally:
            if reader is not None:
                reader.close()
            pa.default_memory_pool().release_unused()
        if not parsed.rows:
            return None
        if float32 and len({block.dtype for block in parsed.blocks}) > 1:
            # A block beyond float32's range after narrowed ones: keep float64 throughout,
            # as the Python parser does.
            return _parse_arrow(source, layout, wanted, False, names_ok)
        return parsed
    return None


def _add_batch(pa, batch, columns: _Columns, whitespace: bool) -> bool:
    """Add one record batch; False where the Python parser must read the file instead."""
    import pyarrow.compute as pc

    for column in batch.columns:
        if pa.types.is_string(column.type) and (
            pc.any(pc.match_substring(column, '"')).as_py()
            or pc.any(pc.match_substring(column, "\0")).as_py()
        ):
            return False  # quoting is the Python parser's job, and so is a NUL byte
    block = np.empty((batch.num_rows, len(columns.wanted)), dtype=np.float64)
    text, first = {}, {}
    for j, index in enumerate(columns.wanted):
        column = batch.column(index)
        if pa.types.is_floating(column.type):
            fill_from_arrow(block[:, j], column)
            continue
        cells = [c.strip() for c in column.to_pylist()]
        if any(c == "" or (whitespace and len(c.split()) != 1) for c in cells):
            return False
        block[:, j] = [to_number(c) if is_number(c) else math.nan for c in cells]
        text[index] = cells
        found = _first_text(cells)
        if found is not None:
            first[index] = found
    columns.add(block, text, first)
    return True


_ARROW_NUMPY = {"double": np.float64, "float": np.float32, "halffloat": np.float16}


def fill_from_arrow(out: np.ndarray, column) -> None:
    """Copy a numeric Arrow column without nulls into ``out``, chunk by chunk.

    The values are read from the Arrow buffers directly: ``Array.to_numpy`` would import
    pandas, which costs more than parsing a large CSV.
    """
    start = 0
    for chunk in getattr(column, "chunks", [column]):
        name = str(chunk.type)
        dtype = np.dtype(_ARROW_NUMPY.get(name, name))
        values = np.frombuffer(
            chunk.buffers()[1], dtype=dtype, count=len(chunk), offset=chunk.offset * dtype.itemsize
        )
        out[start : start + len(chunk)] = values
        start += len(chunk)


def read_text(
    source: Source,
    requests: list[Request],
    delimiter: str | None = None,
    header: bool | None = None,
    one_column: str | None = None,
) -> list[InputArray]:
    """Read a text table once and give one InputArray per request. ``one_column`` is the
    delimiter of a file whose first row shows none (a .csv of one column is still CSV)."""
    layout = _layout(source, delimiter, header, any(r.names for r in requests), one_column)
    label = source.label
    selections = []
    for request in requests:
        if request.columns is not None:
            chosen = resolve_columns(request.columns, layout.names, layout.width, label)
        else:
            chosen = [i for i in range(layout.width) if i != layout.index_column]
        selections.append(chosen)
    dropping = layout.index_column is not None and any(r.columns is None for r in requests)
    wanted = sorted({i for chosen in selections for i in chosen})
    if dropping and layout.names[layout.index_column] != "":
        wanted = sorted({*wanted, layout.index_column})  # to check that it holds 0..N-1
    names_ok = {i for request, chosen in zip(requests, selections) if request.names for i in chosen}
    wide = {
        i
        for request, chosen in zip(requests, selections)
        if request.float_dtype != np.float32
        for i in chosen
    }
    float32 = not wide and not (dropping and layout.index_column in wanted)
    columns = None
    if source.size > LARGE_TEXT_BYTES:
        columns = _parse_arrow(source, layout, wanted, float32, names_ok)
        if columns is not None and _has_error(columns, requests, selections):
            columns = None  # the Python parser finds and places the first error
    if columns is None:
        columns = _Columns(wanted, float32, names_ok)
        _parse_python(source, layout, columns)
    notes = list(layout.notes)
    index_name = None
    if dropping and _is_row_index(layout, columns):
        index_name = layout.names[layout.index_column]
        notes.append(
            f"{label}: column 1 ({index_name!r}) is a row index (a pandas to_csv file) and is "
            "not read as data; select columns with --pred-cols/--target-cols to read it"
        )
    else:
        selections = [
            chosen
            if request.columns is not None or layout.index_column is None
            else list(range(layout.width))
            for request, chosen in zip(requests, selections)
        ]
    line_of_row = _line_mapper(source, layout.header_line)
    info = {
        "format": source.format(),
        "header": layout.names is not None,
        "index_column": index_name,
    }
    results = []
    for request, chosen in zip(requests, selections):
        array = _assemble(columns, chosen, request, layout, label, line_of_row)
        shown = label if request.columns is None else f"{label}[{','.join(request.columns)}]"
        header_names = [layout.names[i] for i in chosen] if layout.names else None
        # File columns differ from array columns after a selection or a dropped index.
        mapped = chosen if request.columns is not None or index_name is not None else None
        item = InputArray(shown, array, header_names, dict(info), line_of_row, mapped)
        item.info["notes"] = notes
        results.append(item)
    return results


def _has_error(columns: _Columns, requests: list[Request], selections) -> bool:
    """Whether assembling the requests would fail on a cell that is not a number."""
    for request, chosen in zip(requests, selections):
        texts = [i for i in chosen if i in columns.first_text]
        if texts and not (request.names and len(chosen) == 1):
            return True
    return False


def _is_row_index(layout: Layout, columns: _Columns) -> bool:
    """An unnamed first column is an index; one named like an index must hold 0..N-1."""
    if layout.names[layout.index_column] == "":
        return True
    if layout.index_column in columns.first_text:
        return False
    values = columns.column(layout.index_column)
    return values.dtype.kind == "f" and np.array_equal(values, np.arange(columns.rows))


def _assemble(columns: _Columns, chosen, request: Request, layout: Layout, label, line_of_row):
    if request.names and len(chosen) == 1 and chosen[0] in columns.first_text:
        return columns.column(chosen[0])
    for index in chosen:
        if index in columns.first_text:
            row, cell = columns.first_text[index]
            name = f" ({layout.names[index]})" if layout.names else ""
            raise InputError(
                f"{label}, line {line_of_row(row)}, column {index + 1}{name}: found "
                f"{_cell_text(cell)}; expected a number"
            )
    array = columns.table(chosen, request.float_dtype)
    if request.float_dtype == np.float32:
        array = narrow(array, np.float32)
    return array[:, 0] if len(chosen) == 1 else array
