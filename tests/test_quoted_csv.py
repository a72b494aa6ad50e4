"""Quoted CSV: pyarrow reads it (quoting on) exactly as the Python parser does.

Tables of numbers written with every quoting style are read against Python's ``csv`` module
and ``np.loadtxt``, whole and by blocks, through the Python parser and through pyarrow (the
Python parser spied on so that it fails if called); odd quoting gives the Python parser's
result and errors, on the same lines, whatever reads it.
"""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import losscli
import losscli.io.text as text
from losscli.errors import InputError, OptionError
from losscli.io.common import Blocks, ReadOptions, Request
from losscli.io.read import open_blocks, read_input
from losscli.io.sources import SourceSet, parse_source
from tests import reference as ref
from tests.conftest import assert_usage_error, run_cli

FINITE = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=64)
STYLES = ["all", "nonnumeric", "minimal", "mixed", "padded"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("quoted")


def _no_python_parser(*args, **kwargs):
    raise AssertionError("the Python parser read a chunk that pyarrow should have read")


def _write(rows: list[list[str]], style: str, delimiter: str, end: str, quote_row) -> str:
    """``rows`` of cell text written in a quoting style; ``quote_row(i)`` draws, for the
    mixed style, which cells of row i are quoted."""
    out = io.StringIO()
    if style in ("all", "minimal"):
        quoting = csv.QUOTE_ALL if style == "all" else csv.QUOTE_MINIMAL
        csv.writer(out, delimiter=delimiter, lineterminator=end, quoting=quoting).writerows(rows)
        return out.getvalue()
    if style == "nonnumeric":  # names quoted, numbers bare (as csv.writer writes them)
        writer = csv.writer(
            out, delimiter=delimiter, lineterminator=end, quoting=csv.QUOTE_NONNUMERIC
        )
        for row in rows:
            writer.writerow([float(c) if text.is_number(c) else c for c in row])
        return out.getvalue()
    lines = []
    for i, row in enumerate(rows):
        if style == "padded":
            cells = [f'" {c} "' for c in row]
        else:
            cells = [f'"{c}"' if q else c for c, q in zip(row, quote_row(i, len(row)))]
        lines.append(delimiter.join(cells))
    return end.join(lines) + end


@st.composite
def quoted_tables(draw):
    """(file text, delimiter, expected values, whether it has a header) for a table of
    floats or ints written in one quoting style, with or without a header of quoted names
    and a pandas index column, with LF or CRLF line ends."""
    shape = st.tuples(st.integers(1, 25), st.integers(1, 5))
    if draw(st.booleans()):
        values = draw(arrays(np.int64, shape, elements=st.integers(-(10**6), 10**6)))
        cells = [[str(v) for v in row] for row in values.tolist()]
    else:
        values = draw(arrays(np.float64, shape, elements=FINITE))
        spell = draw(st.sampled_from([repr, "{:.6f}".format]))
        cells = [[spell(v) for v in row] for row in values.tolist()]
    style = draw(st.sampled_from(STYLES))
    delimiter = draw(st.sampled_from([",", ";", "\t"]))
    end = draw(st.sampled_from(["\n", "\r\n"]))
    header = draw(st.booleans())
    rows = [list(row) for row in cells]
    if header:
        names = [f"p{j}" for j in range(values.shape[1])]
        if draw(st.booleans()):  # pandas' to_csv: an unnamed index column of 0..N-1
            names = ["", *names]
            rows = [[str(i), *row] for i, row in enumerate(rows)]
        rows.insert(0, names)

    def quote_row(i, width):
        return draw(st.lists(st.booleans(), min_size=width, max_size=width))

    written = _write(rows, style, delimiter, end, quote_row)
    expected = np.array([[float(c) for c in row] for row in cells], dtype=np.float64)
    return written, delimiter, expected, header


def _by_csv_module(written: str, delimiter: str, header: bool) -> np.ndarray:
    rows = list(csv.reader(written.splitlines(), delimiter=delimiter, strict=True))
    if header:
        names, rows = rows[0], rows[1:]
        if names[0].strip() == "":
            rows = [row[1:] for row in rows]
    return np.array([[float(c.strip()) for c in row] for row in rows], dtype=np.float64)


def _by_numpy(written: str, delimiter: str, header: bool) -> np.ndarray:
    lines = written.splitlines()
    array = np.loadtxt(
        lines,
        delimiter=delimiter,
        quotechar='"',
        skiprows=int(header),
        ndmin=2,
        dtype=np.float64,
    )
    if header and next(csv.reader(lines[:1], delimiter=delimiter))[0].strip() == "":
        array = array[:, 1:]
    return array


def _read_blocks(path, rows: int, names: bool = False) -> np.ndarray:
    """The input read block by block (``--block-rows rows``), the blocks joined."""
    with SourceSet(stdin_fd=None) as sources:
        source = sources.open(parse_source(str(path), ReadOptions()))
        request = Request(names=names, float_dtype=np.float64)
        parts = [items[0].array for items in open_blocks(source, [request], Blocks(rows=rows))]
    return np.concatenate(parts)


def _as_read(expected: np.ndarray) -> np.ndarray:
    return expected[:, 0] if expected.shape[1] == 1 else expected


@settings(max_examples=120, deadline=None)
@given(quoted_tables(), st.sampled_from([1, 7, 100]), st.sampled_from([48, 1 << 23]))
def test_quoted_tables_read_as_csv_and_numpy_read_them(folder, table, rows, chunk_bytes):
    """Every quoting style, headers, index columns, delimiters, CRLF: the values are those
    of the csv module and of np.loadtxt, read by the Python parser and by pyarrow, whole and
    by blocks; pyarrow reads every chunk without the Python parser."""
    written, delimiter, expected, header = table
    path = folder / "t.csv"
    path.write_bytes(written.encode())
    np.testing.assert_array_equal(_by_csv_module(written, delimiter, header), expected)
    np.testing.assert_array_equal(_by_numpy(written, delimiter, header), expected)
    small = read_input(str(path))
    np.testing.assert_array_equal(small.array, _as_read(expected))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(text, "LARGE_TEXT_BYTES", 0)
        patch.setattr(text, "ARROW_BLOCK_BYTES", chunk_bytes)
        patch.setattr(text, "_parse_python", _no_python_parser)
        large = read_input(str(path))
        blocks = _read_blocks(path, rows)
    np.testing.assert_array_equal(large.array, _as_read(expected))
    np.testing.assert_array_equal(blocks, _as_read(expected))
    assert large.header == small.header
    assert large.info == small.info


# Cells whose quoting the two parsers could read differently: quoted delimiters, escapes,
# text after a closing quote, spaces around quotes, a quote inside a cell, a quoted cell
# across a line break, an unterminated quote, quoted empty cells and names.
QUOTED_CELLS = st.sampled_from(
    [
        '"1.5"',
        '"-2"',
        '" 1.5 "',
        '"1e5"',
        '"nan"',
        '"1,5"',
        '"1;5"',
        '"1\t5"',
        '""',
        '"a""b"',
        '""""',
        '"1.5"0',
        '"1.5" ',
        ' "1.5"',
        '1"5',
        '1.5"',
        '"1\n2"',
        '"1\r\n2"',
        '"',
        '"1.5',
        '"cat"',
        '"c,at"',
        '"cat" ',
        '"\x00"',
        "2.5",
        "cat",
        "",
    ]
)


@st.composite
def odd_quoted_tables(draw):
    delimiter = draw(st.sampled_from([",", ";", "\t"]))
    width = draw(st.integers(1, 3))
    numbers = st.sampled_from(['"0.25"', '"3"', "4", '"-1e-3"'])
    cells = st.one_of(numbers, numbers, QUOTED_CELLS)
    rows = draw(st.lists(st.lists(cells, min_size=width, max_size=width), min_size=1, max_size=8))
    if draw(st.booleans()):
        rows.insert(0, [f'"n{j}"' for j in range(width)])
    end = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    return end.join(delimiter.join(row) for row in rows).encode() + end.encode()


def _outcome(path, names: bool, rows: int | None = None):
    try:
        if rows is not None:
            return ("array", _read_blocks(path, rows, names).tolist())
        result = read_input(str(path), allow_names=names)
    except (InputError, OptionError) as error:
        return ("error", error.message)
    return ("array", result.array.tolist(), result.header, json.dumps(result.info, default=str))


def _same(a, b) -> None:
    assert a[0] == b[0], (a, b)
    if a[0] == "array":  # NaN where NaN: compare the values' text
        assert repr(a[1:]) == repr(b[1:]), (a, b)
    else:
        assert a == b


@settings(max_examples=250, deadline=None)
@given(odd_quoted_tables(), st.booleans(), st.sampled_from([None, 1, 3]))
def test_odd_quoting_reads_as_the_python_parser_reads_it(folder, data, names, rows):
    """pyarrow gives the Python parser's values, names and errors, with their lines, for
    every quoting case: whole files, and chunks of a few lines (a file's first error is its
    chunk's first, so both parsers are given the same chunks)."""
    path = folder / "odd.csv"
    path.write_bytes(data)
    for chunk_bytes in (1 << 23, 24):
        outcomes = []
        for arrow in (False, True):
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(text, "LARGE_TEXT_BYTES", 0 if arrow else 1 << 40)
                patch.setattr(text, "ARROW_MIN_LINES", 0 if arrow else 1 << 40)
                patch.setattr(text, "ARROW_BLOCK_BYTES", chunk_bytes)
                outcomes.append(_outcome(path, names, rows))
        _same(*outcomes)


GOOD = '"0.5","1.5"\n' * 20  # lines 1 to 20


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ('"0.5","1.5\n', r"line 21: malformed quoting \(unexpected end of data\)"),
        ('"0.5","1\n5"\n', r"line 21: malformed quoting \(unexpected end of data\)"),
        ('"0.5","abc"\n', r"line 21, column 2: found 'abc'; expected a number"),
        ('"0.5",""\n', r"line 21, column 2: found an empty cell; expected a number"),
        ('"0.5","1,5"\n', r"line 21, column 2: found '1,5'; expected a number"),
        ('"0.5",1"5\n', r"line 21, column 2: found '1\"5'; expected a number"),
        ('"0.5","1.5"0\n', r"line 21: malformed quoting \(',' expected after '\"'\)"),
        ('"0.5","1.5" \n', r"line 21: malformed quoting \(',' expected after '\"'\)"),
        ('"0.5", "1.5"\n', r"line 21, column 2: found '\"1.5\"'; expected a number"),
        ('"0.5"\n', r"line 21: found 1 columns, expected 2"),
        ('"0.5","1,5",2\n', r"line 21: found 3 columns, expected 2"),
    ],
)
def test_errors_in_quoted_files_name_their_line(tmp_path, monkeypatch, bad, message):
    path = tmp_path / "bad.csv"
    path.write_text(GOOD + bad + GOOD)
    with pytest.raises(InputError, match=message) as small:
        read_input(str(path))
    monkeypatch.setattr(text, "LARGE_TEXT_BYTES", 0)
    for chunk_bytes in (1 << 23, 100):
        monkeypatch.setattr(text, "ARROW_BLOCK_BYTES", chunk_bytes)
        with pytest.raises(InputError) as large:
            read_input(str(path))
        assert large.value.message == small.value.message
    out = run_cli("mse", path, path, "--block-rows", "7")
    assert_usage_error(out, "bad.csv, line 21")


def test_decimal_commas_in_quotes_are_refused_as_today(tmp_path, monkeypatch):
    """Rows like "1,5";"2,5" hold a comma, so they are read as comma-separated, of malformed
    quoting; with ?delimiter=; their cells are not numbers (decimal commas are not read)."""
    path = tmp_path / "dc.csv"
    path.write_text('"1,5";"2,5"\n' * 30)
    for large in (1 << 20, 0):
        monkeypatch.setattr(text, "LARGE_TEXT_BYTES", large)
        with pytest.raises(InputError, match=r"line 1: malformed quoting"):
            read_input(str(path))
        with pytest.raises(InputError, match=r"line 1, column 1: found '1,5'; expected"):
            read_input(f"{path}?delimiter=;")


def test_a_plain_quoted_file_is_read_by_pyarrow(tmp_path, monkeypatch, rng):
    """Quoted logits over 1 MiB and a quoted label file of many short lines: neither is
    given to the Python parser, and the loss is the one of the same numbers unquoted."""
    x = np.round(rng.normal(size=(20_000, 10)), 6)
    y = rng.integers(0, 10, size=20_000)
    logits, labels = tmp_path / "x.csv", tmp_path / "y.csv"
    with open(logits, "w", newline="") as out:
        csv.writer(out, quoting=csv.QUOTE_ALL).writerows(x.tolist())
    with open(labels, "w", newline="") as out:
        csv.writer(out, quoting=csv.QUOTE_ALL).writerows([[v] for v in y.tolist()])
    assert logits.stat().st_size > text.LARGE_TEXT_BYTES
    assert labels.stat().st_size < text.LARGE_TEXT_BYTES  # read by pyarrow for its lines
    monkeypatch.setattr(text, "_parse_python", _no_python_parser)
    np.testing.assert_array_equal(read_input(str(logits)).array, x)
    np.testing.assert_array_equal(read_input(str(labels)).array, y)
    options = {"dtype": "float64", "no_grad": True}
    whole = losscli.compute_files("ce", str(logits), str(labels), **options)
    blocks = losscli.compute_files("ce", str(logits), str(labels), block_rows=7, **options)
    expected = ref.cross_entropy(x, y)
    assert whole.value == pytest.approx(expected, rel=1e-12)
    assert blocks.value == pytest.approx(expected, rel=1e-12)


def test_a_quoted_stream_is_held_only_a_block_at_a_time(monkeypatch, rng, tmp_path):
    """Quoted text on stdin is parsed by pyarrow a chunk at a time, never held whole."""
    from losscli.io import sources

    held = []
    fill = sources.StreamFile._fill

    def watched(self, end):
        fill(self, end)
        held.append(len(self.buffer))

    monkeypatch.setattr(sources.StreamFile, "_fill", watched)
    monkeypatch.setattr(text, "ARROW_BLOCK_BYTES", 1 << 16)  # chunks as a large input's
    monkeypatch.setattr(text, "LARGE_TEXT_BYTES", 1 << 15)
    monkeypatch.setattr(text, "_parse_python", _no_python_parser)
    x = np.round(rng.normal(size=(30_000, 4)), 6)
    data = "".join(",".join(f'"{v:.6f}"' for v in row) + "\r\n" for row in x).encode()
    y = rng.normal(size=(30_000, 4))
    np.save(tmp_path / "y.npy", y)
    result = losscli.compute_files(
        "mse", "-", str(tmp_path / "y.npy"), stdin=io.BytesIO(data), block_rows=5000,
        dtype="float64", no_grad=True,
    )  # fmt: skip
    assert max(held) < len(data) / 8
    assert result.value == pytest.approx(ref.mse(x, y), rel=1e-12)


def test_a_delimiter_pyarrow_cannot_split_at_reads_as_the_python_parser_reads_it(
    tmp_path, monkeypatch
):
    """A non-ASCII delimiter (two bytes in UTF-8) is the Python parser's, at every size."""
    path = tmp_path / "s.csv"
    path.write_text('"1.5"§2\n3§"4"\n' * 10)
    small = read_input(f"{path}?delimiter=§").array
    monkeypatch.setattr(text, "LARGE_TEXT_BYTES", 0)
    np.testing.assert_array_equal(read_input(f"{path}?delimiter=§").array, small)
    np.testing.assert_array_equal(small, [[1.5, 2], [3, 4]] * 10)
