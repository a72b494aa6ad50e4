"""Text tables (CSV, TSV, whitespace-separated): one meaning whatever the size.

Every decision (delimiter, header, pandas index column) is made once, from whole rows at the
start of the file, by the same code for every size. The data rows are then parsed by the
Python parser, or, for files of many lines, by pyarrow's multithreaded reader, which is used
only where its result is the Python parser's: it is given the rows after the header (never a
byte prefix), it splits at every delimiter outside quotes, number cells are read into float64
by both with the same correctly rounded conversion, and whatever pyarrow would read
differently (a quote that is not a whole cell's, see ``losscli.io.quoting``; whitespace-only
lines, empty cells, names with spaces, a cell it rejects) sends the chunk to the Python
parser instead, which also locates every error by line and column. ``tests/test_io.py`` and
``tests/test_quoted_csv.py`` check the two agree on generated tables.
"""

from __future__ import annotations

import csv
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from losscli.errors import InputError
from losscli.io.columns import resolve_columns
from losscli.io.common import Blocks, InputArray, Note, Request, block_rows, narrow, worked_ahead
from losscli.io.formats import not_text
from losscli.io.quoting import arrow_quoting
from losscli.io.sources import FIRST_CHUNK, Source

# Text above this size, or of more lines, is parsed by pyarrow; below both, Python's parser
# is done before pyarrow is imported.
LARGE_TEXT_BYTES = 1 << 20
ARROW_MIN_LINES = 1 << 14
BOM = b"\xef\xbb\xbf"
LINE_BREAK = re.compile(rb"\r\n|\r|\n")
NONBLANK = re.compile(rb"[^ \t\n\r\x0b\x0c]")
# Tables wider than this are parsed in Python: pyarrow's cost per column outgrows the data.
ARROW_MAX_COLUMNS = 4096
# Bytes of text read and parsed at a time (whole lines): bounds the reader's working memory.
ARROW_BLOCK_BYTES = 1 << 23
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


def _decode(line: bytes, label: str, number: int, start: bytes = b"") -> str:
    """A line as text; ``start``, the file's first bytes, may show the encoding it is in."""
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(not_text(label, number, start or line, "not UTF-8")) from None


def _breaks(segment: bytes) -> int:
    """How many line breaks (\\n, \\r\\n or \\r) a run of bytes holds."""
    breaks = segment.count(b"\n")
    if b"\r" in segment:  # a search, much cheaper than two more counts
        breaks += segment.count(b"\r") - segment.count(b"\r\n")
    return breaks


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
            raise InputError(not_text(source.label, line, buffer, "a NUL byte"))
        lines = []
        for number, raw, end, ended in nonblank_lines(buffer, start=len(BOM) if bom else 0):
            # A line is whole when a break ends it; a final "\r" may be the first half of
            # "\r\n", so it waits for the next byte (unless the file ends there).
            if not eof and (not ended or (end == len(buffer) and buffer.endswith(b"\r"))):
                break
            lines.append((number, end, _decode(raw, source.label, number, buffer)))
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
                Note(
                    label,
                    f"line {lines[0][0]} ({','.join(first)}) is read as a header of column "
                    "numbers, as pandas' to_csv writes one; only if that line is data, add "
                    "?header=no to the file's name",
                )
            )
        elif not header and _counting_row(first):
            notes.append(
                Note(
                    label,
                    f"line {lines[0][0]} ({','.join(first)}) is read as data, but it may be a "
                    "header of column numbers; if it is, add ?header=yes to the file's name",
                )
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


class _LineStarts:
    """The line number at which each chunk starts, counted only when it is asked for (an
    error to place, or the Python parser): counting every line break of a large file costs
    more than parsing its numbers."""

    def __init__(self, source: Source, offset: int, line: int):
        self.source = source
        self.offsets = [offset]
        self.lines = [line]

    def add(self, offset: int) -> int:
        """Note where the next chunk starts; returns its index."""
        self.offsets.append(offset)
        return len(self.offsets) - 1

    def line(self, index: int) -> int:
        while len(self.lines) <= index:
            j = len(self.lines)
            start, stop = self.offsets[j - 1], self.offsets[j]
            self.lines.append(self.lines[-1] + _breaks(self.source.read_at(start, stop - start)))
        return self.lines[index]


def _chunks(source: Source, offset: int, first_line: int, size: int):
    """(chunk, its first line number as a function) for runs of whole lines from ``offset``
    on, each about ``size`` bytes (longer where one line is longer). A chunk ends after a
    line break, never between the two bytes of "\\r\\n"; it is a view of the bytes read, and
    the part after its last line break is read again with the next chunk."""
    starts = _LineStarts(source, offset, first_line)
    index = 0
    while True:
        want = max(size, 1)
        data = source.read_at(offset, want)
        if not data:
            return
        while True:
            ended = len(data) < want  # the end of the file
            last_n, last_r = data.rfind(b"\n"), data.rfind(b"\r", 0, len(data) - 1)
            cut = len(data) if ended else max(last_n, last_r) + 1
            if cut > 0:
                break
            want = 2 * len(data)  # one line longer than a chunk: read on to its end
            data += source.read_at(offset + len(data), want - len(data))
        yield memoryview(data)[:cut], _first_line(starts, index)
        offset += cut
        index = starts.add(offset)
        if not source.regular:  # a stream cannot be read again: count its lines now
            starts.line(index)
            source.release(offset)


def _first_line(starts: _LineStarts, index: int):
    return lambda: starts.line(index)


@dataclass
class _Parsed:
    """The rows of one chunk: a float64 block (NaN where a cell is text) over the wanted
    columns, the cells of name columns that hold text, and the first text cell of every
    column that has one, as (row, cell)."""

    block: np.ndarray
    text: dict[int, np.ndarray]
    first_text: dict[int, tuple[int, str]]
    chunk: memoryview
    first_line: Callable[[], int]
    _lines: list[int] | None = None

    def line(self, row: int) -> int:
        """The line number of data row ``row`` of this chunk."""
        if self._lines is None:
            self._lines = [n for n, *_ in nonblank_lines(bytes(self.chunk), self.first_line())]
        lines = self._lines
        if 0 <= row < len(lines):
            return lines[row]
        return lines[-1] if lines else self.first_line()


def _first_text(cells: list[str]) -> tuple[int, str] | None:
    return next(((r, c) for r, c in enumerate(cells) if not is_number(c)), None)


def _parse_python(
    chunk: memoryview, first_line, label: str, layout: Layout, wanted: list[int], names: set[int]
) -> _Parsed:
    """Parse a chunk's rows in Python, converting cells as it goes into float blocks of
    PYTHON_BLOCK_ROWS rows (no table of strings or of Python floats is kept)."""
    width = layout.width
    blocks: list[np.ndarray] = []
    rows: list[list[float]] = []
    text: dict[int, list[str]] = {index: [] for index in names}
    first: dict[int, tuple[int, str]] = {}
    lines = []
    for count, (number, raw, *_) in enumerate(nonblank_lines(bytes(chunk), first_line())):
        if b"\0" in raw:
            raise InputError(not_text(label, number, raw, "a NUL byte"))
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
        lines.append(number)
        if len(rows) == PYTHON_BLOCK_ROWS:
            blocks.append(np.array(rows, dtype=np.float64).reshape(len(rows), len(wanted)))
            rows = []
    if rows or not blocks:
        blocks.append(np.array(rows, dtype=np.float64).reshape(len(rows), len(wanted)))
    block = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
    texts = {i: np.array(cells, dtype=str) for i, cells in text.items() if i in first}
    return _Parsed(block, texts, first, chunk, first_line, lines)


def _parse_arrow(
    chunk: memoryview, first_line, layout: Layout, wanted: list[int], names_ok: set[int]
) -> _Parsed | None:
    """A chunk's rows parsed by pyarrow; None where the Python parser must read it instead."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    whitespace = layout.delimiter is None
    if (whitespace and layout.width != 1) or layout.width > ARROW_MAX_COLUMNS:
        return None
    if not (layout.delimiter or "\t").isascii():
        return None  # pyarrow splits at one byte
    # pyarrow splits at every delimiter outside quotes. Where every quote is a whole cell's,
    # its cells are the Python parser's; any other quote sends the chunk to the Python
    # parser. Whitespace-separated text has no quoting.
    quoting = False if whitespace else arrow_quoting(chunk, layout.delimiter)
    if quoting is None:
        return None
    column_names = [f"c{i}" for i in range(layout.width)]
    for attempt in ("numbers", "names"):
        if attempt == "names" and not names_ok:
            return None
        types = {name: pa.string() for name in column_names}
        for index in wanted:
            as_text = attempt == "names" and index in names_ok
            types[column_names[index]] = pa.string() if as_text else pa.float64()
        try:
            table = pacsv.read_csv(
                pa.py_buffer(chunk),
                read_options=pacsv.ReadOptions(
                    column_names=column_names, block_size=max(1 << 18, len(chunk) // 4 + 1)
                ),
                parse_options=pacsv.ParseOptions(
                    delimiter=layout.delimiter or "\t",
                    quote_char='"' if quoting else False,
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
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            continue
        finally:
            pa.default_memory_pool().release_unused()
        if not table.num_rows:
            return None
        return _from_table(pa, table, chunk, first_line, wanted, whitespace)
    return None


def _from_table(pa, table, chunk, first_line, wanted, whitespace) -> _Parsed | None:
    """A parsed chunk from pyarrow's table; None where the Python parser must read it."""
    import pyarrow.compute as pc

    for column in table.columns:
        if pa.types.is_string(column.type) and pc.any(pc.match_substring(column, "\0")).as_py():
            return None  # a NUL byte is the Python parser's to place
    block = np.empty((table.num_rows, len(wanted)), dtype=np.float64)
    text, first = {}, {}
    for j, index in enumerate(wanted):
        column = table.column(index)
        if pa.types.is_floating(column.type):
            fill_from_arrow(block[:, j], column)
            continue
        cells = [c.strip() for c in column.to_pylist()]
        if any(c == "" or (whitespace and len(c.split()) != 1) for c in cells):
            return None
        block[:, j] = [to_number(c) if is_number(c) else math.nan for c in cells]
        found = _first_text(cells)
        if found is not None:
            first[index] = found
            text[index] = np.array(cells, dtype=str)
    return _Parsed(block, text, first, chunk, first_line)


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


def text_blocks(
    source: Source,
    requests: list[Request],
    delimiter: str | None = None,
    header: bool | None = None,
    one_column: str | None = None,
    blocks: Blocks | None = None,
):
    """Read a text table once, in chunks of whole lines, and yield one InputArray per request
    for each block of rows (``blocks`` None: chunks as parsed, to be joined). ``one_column`` is
    the delimiter of a file whose first row shows none (a .csv of one column is still CSV)."""
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
    large = source.size > LARGE_TEXT_BYTES
    info = {
        "format": source.format(),
        "header": layout.names is not None,
        "index_column": None,
        "notes": list(layout.notes),
    }
    position = {index: j for j, index in enumerate(wanted)}
    step_rows = block_rows(blocks, len(wanted))
    rows = 0
    index_name, mapped = None, None

    def by_arrow(chunk, first_line) -> _Parsed | None:
        if large or len(chunk) > LARGE_TEXT_BYTES or _many_lines(chunk):
            return _parse_arrow(chunk, first_line, layout, wanted, names_ok)
        return None

    chunks = _chunks(source, layout.data_offset, layout.header_line + 1, ARROW_BLOCK_BYTES)
    for chunk, first_line, parsed in worked_ahead(chunks, by_arrow):
        if parsed is not None and _has_error(parsed, requests, selections):
            parsed = None  # the Python parser finds and places the first error
        if parsed is None:
            parsed = _parse_python(chunk, first_line, label, layout, wanted, names_ok)
        count = len(parsed.block)
        if not count:
            continue
        if rows == 0:  # what the first rows decide about a pandas index column
            if dropping and _index_break(layout, parsed, position, 0) is None:
                index_name = layout.names[layout.index_column]
                info["index_column"] = index_name
                info["notes"].append(
                    Note(
                        label,
                        f"column 0 ({index_name!r}) holds a pandas row index (to_csv) and is "
                        "not read as data; to read it, name its columns in "
                        "--pred-cols/--target-cols",
                    )
                )
            else:
                selections = [
                    chosen
                    if request.columns is not None or layout.index_column is None
                    else list(range(layout.width))
                    for request, chosen in zip(requests, selections)
                ]
            # File columns differ from array columns after a selection or a dropped index.
            mapped = [
                chosen if request.columns is not None or index_name is not None else None
                for request, chosen in zip(requests, selections)
            ]
        elif index_name and (broken := _index_break(layout, parsed, position, rows)) is not None:
            raise InputError(
                f"{label}, line {parsed.line(broken)}: column 0 ({index_name!r}) held the row "
                f"numbers 0, 1, 2, ... in the first {rows + broken} rows and was dropped as a "
                "pandas row index, but it does not go on counting here; select the columns with "
                "--pred-cols/--target-cols"
            )
        arrays = [
            # Whole reads are narrowed once joined: a value beyond float32 in one chunk keeps
            # the whole input in float64, as one block would.
            _assemble(parsed, position, chosen, request, layout, label, blocks is not None)
            for request, chosen in zip(requests, selections)
        ]
        step = step_rows or count
        for start in range(0, count, step):
            stop = min(start + step, count)
            items = []
            for request, chosen, array, columns in zip(requests, selections, arrays, mapped):
                shown = (
                    label if request.columns is None else f"{label}[{','.join(request.columns)}]"
                )
                names = [layout.names[i] for i in chosen] if layout.names else None
                item = InputArray(
                    shown,
                    array[start:stop],
                    names,
                    info,
                    _local_lines(parsed, start),
                    columns,
                    row_offset=rows + start,
                )
                items.append(item)
            yield items
        rows += count
    if not rows:
        only = " (only a header)" if layout.names is not None else ""
        raise InputError(f"{label}: has no data rows{only}")


def _many_lines(chunk: memoryview) -> bool:
    """Whether a chunk holds more than ARROW_MIN_LINES lines."""
    return len(chunk) > ARROW_MIN_LINES and _breaks(bytes(chunk)) > ARROW_MIN_LINES


def _local_lines(parsed: _Parsed, start: int):
    return lambda row: parsed.line(start + row)


def _has_error(parsed: _Parsed, requests: list[Request], selections) -> bool:
    """Whether assembling the requests would fail on a cell that is not a number."""
    for request, chosen in zip(requests, selections):
        texts = [i for i in chosen if i in parsed.first_text]
        if texts and not (request.names and len(chosen) == 1):
            return True
    return False


def _index_break(layout: Layout, parsed: _Parsed, position: dict, start: int) -> int | None:
    """The first row of this chunk where a column named like an index stops holding the row
    numbers (counted from ``start``, the rows before this chunk); None where it does not.
    An unnamed first column is an index whatever it holds."""
    if layout.names[layout.index_column] == "":
        return None
    if layout.index_column in parsed.first_text:
        return parsed.first_text[layout.index_column][0]
    values = parsed.block[:, position[layout.index_column]]
    wrong = np.flatnonzero(values != np.arange(start, start + len(values)))
    return int(wrong[0]) if wrong.size else None


def _assemble(parsed: _Parsed, position: dict, chosen, request: Request, layout, label, narrowed):
    if request.names and len(chosen) == 1 and chosen[0] in parsed.first_text:
        return parsed.text[chosen[0]]
    for index in chosen:
        if index in parsed.first_text:
            row, cell = parsed.first_text[index]
            name = f" ({layout.names[index]})" if layout.names else ""
            raise InputError(
                f"{label}, line {parsed.line(row)}, column {index + 1}{name}: found "
                f"{_cell_text(cell)}; expected a number"
            )
    block = parsed.block
    if [position[i] for i in chosen] == list(range(block.shape[1])):
        array = block
    else:
        array = block[:, [position[i] for i in chosen]]
    if narrowed:
        array = narrow(array, request.float_dtype)
    return array[:, 0] if len(chosen) == 1 else array
