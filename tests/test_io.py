"""Readers: every format, header detection, column selection, stdin, and round trips."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from losscli import io as lio
from losscli.errors import InputError, OptionError
from tests.conftest import SAMPLE, read_back, run_cli, run_process

FINITE = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=64)


def test_csv_without_header_reads_as_float_table(files):
    path = files.text("a.csv", "1,2,3\n4,5,6\n")
    result = lio.read_input(str(path))
    assert result.header is None
    np.testing.assert_array_equal(result.array, [[1, 2, 3], [4, 5, 6]])


def test_csv_with_header_keeps_column_names(files):
    path = files.text("a.csv", "cat,dog\n0.5,1.5\n2,3\n")
    result = lio.read_input(str(path))
    assert result.header == ["cat", "dog"]
    assert result.array.shape == (2, 2)


def test_single_column_reads_as_1d(files):
    path = files.text("y.csv", "3\n1\n2\n")
    assert lio.read_input(str(path)).array.shape == (3,)


def test_tsv_and_whitespace_text(files):
    tsv = files.text("a.tsv", "1\t2\n3\t4\n")
    txt = files.text("a.txt", "1  2\n 3 4\n\n")
    np.testing.assert_array_equal(lio.read_input(str(tsv)).array, [[1, 2], [3, 4]])
    np.testing.assert_array_equal(lio.read_input(str(txt)).array, [[1, 2], [3, 4]])


def test_explicit_delimiter_and_header_flags(files):
    path = files.text("odd.dat", "1;2\n3;4\n")
    result = lio.read_input(str(path), delimiter=";", header=False)
    np.testing.assert_array_equal(result.array, [[1, 2], [3, 4]])
    forced = lio.read_input(str(path), delimiter=";", header=True)
    assert forced.header == ["1", "2"]
    assert forced.array.shape == (1, 2)


def test_names_column_without_header_is_data(files):
    path = files.text("names.csv", "cat\ndog\ncat\n")
    result = lio.read_input(str(path), allow_names=True)
    assert result.header is None
    assert list(result.array) == ["cat", "dog", "cat"]


def test_npy_is_memory_mapped_and_keeps_shape(files, rng):
    array = rng.normal(size=(4, 3, 2)).astype(np.float32)
    result = lio.read_input(str(files.npy("x.npy", array)))
    assert isinstance(result.array, np.memmap)
    np.testing.assert_array_equal(result.array, array)


def test_npz_with_key_and_single_array(files):
    both = files.npz("both.npz", a=np.ones(3), b=np.zeros((2, 2)))
    one = files.npz("one.npz", only=np.arange(4.0))
    np.testing.assert_array_equal(lio.read_input(f"{both}:b").array, np.zeros((2, 2)))
    np.testing.assert_array_equal(lio.read_input(str(one)).array, np.arange(4.0))


def test_parquet_reads_numeric_columns_and_selects(files):
    path = files.parquet("t.parquet", a=[1.0, 2.0], b=[3, 4], label=["x", "y"])
    np.testing.assert_array_equal(lio.read_input(str(path)).array, [[1, 3], [2, 4]])
    chosen = lio.read_input(str(path), columns=["b"])
    np.testing.assert_array_equal(chosen.array, [3, 4])
    assert chosen.source.endswith("[b]")


def test_format_sniffed_from_content_when_extension_is_unusual(files, rng):
    array = rng.normal(size=(3, 2))
    npy = files.npy("x.npy", array)
    renamed = npy.rename(npy.with_suffix(".bin"))
    np.testing.assert_array_equal(lio.read_input(str(renamed)).array, array)
    pq_path = files.parquet("t.parquet", a=[1.0, 2.0])
    pq_renamed = pq_path.rename(pq_path.with_suffix(".dat"))
    np.testing.assert_array_equal(lio.read_input(str(pq_renamed)).array, [1.0, 2.0])


def test_input_format_override(files):
    path = files.text("data.weird", "1,2\n3,4\n")
    result = lio.read_input(str(path), input_format="csv")
    assert result.array.shape == (2, 2)


def test_columns_by_index_and_name(files):
    path = files.text("t.csv", "y,y_hat,z\n1,2,3\n4,5,6\n")
    np.testing.assert_array_equal(lio.read_input(str(path), columns=["y_hat"]).array, [2, 5])
    np.testing.assert_array_equal(
        lio.read_input(str(path), columns=["0", "2"]).array, [[1, 3], [4, 6]]
    )


def test_stdin_text_and_npy_are_sniffed(rng):
    buffer = io.BytesIO()
    array = rng.normal(size=(5, 2))
    np.save(buffer, array)
    npy = lio.read_input("-", stdin=io.BytesIO(buffer.getvalue()))
    np.testing.assert_array_equal(npy.array, array)
    text = lio.read_input("-", stdin=io.BytesIO(b"1,2\n3,4\n"))
    assert text.source == "<stdin>"
    np.testing.assert_array_equal(text.array, [[1, 2], [3, 4]])


def _as_text(array: np.ndarray, delimiter: str) -> bytes:
    return "".join(delimiter.join(repr(float(v)) for v in row) + "\n" for row in array).encode()


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.float64, st.tuples(st.integers(1, 30), st.integers(1, 6)), elements=FINITE),
    st.sampled_from([",", "\t", " "]),
)
def test_text_round_trip(array, delimiter):
    result = lio.read_input("-", stdin=io.BytesIO(_as_text(array, delimiter)))
    expected = array[:, 0] if array.shape[1] == 1 else array
    np.testing.assert_array_equal(result.array, expected)


# Cells of hand-made and generated tables: numbers in every spelling the grammar allows, and
# what it does not (names, booleans, underscores, hex, non-ASCII digits, quotes, spaces).
NUMBER_CELLS = st.one_of(
    st.floats(allow_nan=False, width=64).map(repr),
    st.integers(-(10**20), 10**20).map(str),
    st.sampled_from(
        [
            "1.",
            ".5",
            "+3",
            "-0",
            "1e5",
            "1E+5",
            "nan",
            "NaN",
            "-inf",
            "Infinity",
            "1e39",
            "1e-400",
            " 2.5 ",
            '"1.5"',
            "00012",
            "nan(1)",
        ]
    ),
)
ODD_CELLS = st.sampled_from(
    [
        "cat",
        "True",
        "False",
        "true",
        "a b",
        "",
        " ",
        "1_0",
        "0x1",
        "\u0661",
        "1e",
        "-",
        '"',
        "'1'",
        "inf1",
        "1,5",
        "x\u00a0",
        "\u00a01",
        "1\t",
    ]
)
CELLS = st.one_of(NUMBER_CELLS, NUMBER_CELLS, NUMBER_CELLS, ODD_CELLS)


@st.composite
def text_tables(draw):
    """Text files of every shape the readers meet: headers (pandas ones too), blank and
    whitespace lines, CRLF or CR line ends, a BOM, a very wide first row, quoted cells."""
    delimiter = draw(st.sampled_from([",", "\t", ";", " "]))
    width = draw(st.integers(1, 4))
    rows = draw(st.lists(st.lists(CELLS, min_size=width, max_size=width), min_size=1, max_size=8))
    if draw(st.booleans()):
        rows[0][0] = "0." + "1" * draw(st.integers(1, 70_000))  # a first row wider than 64 KiB
    if draw(st.booleans()):
        rows.insert(
            0,
            [draw(st.sampled_from(["", "label", "0", "cat", "index"]))]
            + [str(i) for i in range(width - 1)],
        )
        if draw(st.booleans()):  # a pandas to_csv index column
            rows = [rows[0]] + [[str(i), *r[1:]] for i, r in enumerate(rows[1:])]
    if draw(st.integers(0, 3)) == 0:
        rows.append(rows[-1][:-1] if width > 1 else ["1", "2"])  # ragged
    lines = [delimiter.join(r) for r in rows]
    for _ in range(draw(st.integers(0, 2))):
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(["", "  ", "\t"])))
    end = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    text = end.join(lines) + (end if draw(st.booleans()) else "")
    bom = "\ufeff" if draw(st.booleans()) else ""
    return (bom + text).encode("utf-8")


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def _read_outcome(data: bytes, names: bool, float_dtype, columns=None):
    try:
        result = lio.read_input(
            "-",
            stdin=io.BytesIO(data),
            allow_names=names,
            float_dtype=float_dtype,
            columns=columns,
        )
    except (InputError, OptionError) as error:
        return ("error", type(error).__name__, error.message)
    return ("array", result.array, result.header, result.info)


def _same_outcome(small, large) -> None:
    assert small[0] == large[0], (small, large)
    if small[0] == "error":
        assert small == large
        return
    assert small[1].dtype == large[1].dtype
    assert small[1].shape == large[1].shape
    if small[1].dtype.kind == "f":
        np.testing.assert_array_equal(small[1], large[1])  # bit for bit, NaN where NaN
    else:
        assert small[1].tolist() == large[1].tolist()
    assert small[2:] == large[2:]


@settings(max_examples=300, deadline=None)
@given(
    text_tables(),
    st.booleans(),
    st.sampled_from([np.float32, np.float64]),
    st.sampled_from([None, ("0",), ("1",), ("0", "1"), ("name:label",), ("index:0",), ("0:2",)]),
)
def test_one_meaning_whatever_the_size(monkeypatch_module, data, names, float_dtype, columns):
    """The large-file reader gives the small-file reader's array, header, decisions and
    errors on every table: headers, wide first rows, blank lines, names, booleans, pandas
    index columns, line ends, quotes, column selections."""
    small = _read_outcome(data, names, float_dtype, columns)
    monkeypatch_module.setattr(lio.text, "LARGE_TEXT_BYTES", 0)
    try:
        large = _read_outcome(data, names, float_dtype, columns)
    finally:
        monkeypatch_module.undo()
    _same_outcome(small, large)


@settings(max_examples=30, deadline=None)
@given(
    arrays(
        st.sampled_from([np.float32, np.float64, np.int64]),
        st.tuples(st.integers(1, 10), st.integers(1, 4), st.integers(1, 3)),
        elements=st.integers(-1000, 1000),
    )
)
def test_npy_round_trip(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    result = lio.read_input("-", stdin=io.BytesIO(buffer.getvalue()))
    assert result.array.dtype == array.dtype
    np.testing.assert_array_equal(result.array, array)


def test_large_text_errors_are_located_like_small_ones(files, monkeypatch):
    path = files.text("big.csv", "1,2\n3,4\n5,x\n")
    monkeypatch.setattr(lio.text, "LARGE_TEXT_BYTES", 0)
    with pytest.raises(InputError, match=r"line 3, column 2: found 'x'"):
        lio.read_input(str(path))
    ragged = files.text("ragged.csv", "1,2\n3,4\n5\n")
    with pytest.raises(InputError, match=r"line 3: found 1 columns, expected 2"):
        lio.read_input(str(ragged))


def test_write_array_round_trips_each_format(files, rng):
    grad = rng.normal(size=(6, 3)).astype(np.float32)
    for suffix in (".npy", ".csv", ".tsv", ".txt", ".parquet"):
        path = files.root / f"g{suffix}"
        lio.write_array(path, grad)
        np.testing.assert_allclose(read_back(path), grad, rtol=1e-6)
    assert not list(files.root.glob("*.tmp"))


def test_unknown_column_lists_available(files):
    path = files.text("t.csv", "y,y_hat\n1,2\n")
    with pytest.raises(OptionError, match="no column 'pred'; available: 'y', 'y_hat'"):
        lio.read_input(str(path), columns=["pred"])


def test_sample_data_table_single_file_mode_cli():
    out = run_cli(
        "mse", SAMPLE / "table.csv", "--pred-cols", "y_hat", "--target-cols", "y", "-f", "json"
    )
    assert out.exit_code == 0, out.stderr
    assert '"source": "' in out.stdout and "[y_hat]" in out.stdout


def test_stdin_through_a_real_pipe_text_and_npy():
    text = (SAMPLE / "logits.csv").read_bytes()
    from_pipe = run_process("ce", "-", "sample_data/labels.csv", "-f", "value", input=text)
    from_file = run_process("ce", "sample_data/logits.csv", "sample_data/labels.csv", "-f", "value")
    assert from_pipe.returncode == 0, from_pipe.stderr
    assert from_pipe.stdout == from_file.stdout
    npy = (SAMPLE / "labels.npy").read_bytes()
    labels_pipe = run_process("ce", "sample_data/logits.npy", "-", "-f", "value", input=npy)
    assert labels_pipe.returncode == 0, labels_pipe.stderr
    assert float(labels_pipe.stdout) == pytest.approx(float(from_file.stdout), rel=1e-6)


def test_a_value_beyond_float32_in_a_later_block_reads_as_the_small_parser_does(monkeypatch):
    rows = [f"{i * 0.1:.3f},{i % 7}.25" for i in range(3000)]
    rows[-5] = "1e39,2.5"
    data = ("\n".join(rows) + "\n").encode()
    small = _read_outcome(data, False, np.float32)
    monkeypatch.setattr(lio.text, "LARGE_TEXT_BYTES", 0)
    monkeypatch.setattr(lio.text, "ARROW_BLOCK_BYTES", 4096)
    large = _read_outcome(data, False, np.float32)
    assert small[1].dtype == np.float64  # kept wide so that the check can name 1e39
    _same_outcome(small, large)
