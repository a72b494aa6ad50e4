"""Readers: every format, header detection, column selection, stdin, and round trips."""

from __future__ import annotations

import io
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from losscli import io as lio
from losscli.errors import InputError, OptionError, Terminated
from tests import reference as ref
from tests.conftest import (
    ROOT,
    SAMPLE,
    assert_usage_error,
    read_back,
    rows_text,
    run_cli,
    run_process,
    value_of,
)

FINITE = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=64)

LOGITS = str(SAMPLE / "logits.csv")
LABELS = str(SAMPLE / "labels.csv")


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


# ------------------------------------------------------------ SPEC section 8 in the input layer


@pytest.mark.parametrize(
    "case", ["weight", "pos_weight", "input", "npz_key", "symlink", "hardlink", "tsv_alias"]
)
def test_grad_out_never_replaces_a_file_the_run_reads(tmp_path, case):
    x, y = tmp_path / "x.csv", tmp_path / "y.csv"
    x.write_text("0.2,0.8\n0.6,0.1\n")
    y.write_text("1\n0\n")
    weights = tmp_path / "w.csv"
    weights.write_text("1\n2\n")
    args = ["ce", x, y, "--weight", weights]
    target = weights
    if case == "pos_weight":
        y.write_text("1,0\n0,1\n")
        args = ["bce-logits", x, y, "--pos-weight", weights]
    elif case == "input":
        args, target = ["ce", x, y], x
    elif case == "npz_key":
        npz = tmp_path / "run.npz"
        np.savez(npz, x=np.array([[0.2, 0.8], [0.6, 0.1]]), y=np.array([1, 0]))
        args, target = ["ce", f"{npz}:x", f"{npz}:y"], npz
    elif case == "symlink":
        target = tmp_path / "link.csv"
        target.symlink_to(x)
        args = ["ce", x, y]
    elif case == "hardlink":
        target = tmp_path / "hard.csv"
        os.link(x, target)
        args = ["ce", x, y]
    elif case == "tsv_alias":
        args, target = ["ce", x, f"{y}?format=csv"], y
    before = {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    out = run_cli(*args, "--grad-out", target)
    assert_usage_error(out, "--grad-out", "a file this run reads")
    assert {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_grad_out_never_replaces_the_file_behind_stdin(tmp_path):
    preds = tmp_path / "p.npy"
    np.save(preds, np.array([0.5, 1.5, 2.0]))
    targets = tmp_path / "t.npy"
    np.save(targets, np.array([1.0, 1.0, 1.0]))
    original = preds.read_bytes()
    with open(preds, "rb") as stdin:
        done = subprocess.run(
            [sys.executable, "-m", "losscli", "mse", "-", targets, "--grad-out", preds],
            stdin=stdin,
            capture_output=True,
            cwd=ROOT,
            timeout=120,
        )
    assert done.returncode == 2, done.stderr
    assert b"a file this run reads" in done.stderr
    assert preds.read_bytes() == original


ROWS = 20_000


@pytest.fixture(scope="module")
def big_pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pair")
    rng = np.random.default_rng(7)
    preds, targets = rng.normal(size=ROWS), rng.normal(size=ROWS)
    p, t = folder / "p.csv", folder / "t.csv"
    np.savetxt(p, preds, fmt="%.17g")
    np.savetxt(t, targets, fmt="%.17g")
    return p, t, float(np.mean((preds - targets) ** 2))


def test_process_substitution_and_dev_stdin_are_read_whole(big_pair):
    p, t, expected = big_pair
    script = f'"{sys.executable}" -m losscli mse <(cat "{p}") <(cat "{t}") -f value --dtype float64'
    done = subprocess.run(["bash", "-c", script], capture_output=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) == pytest.approx(expected, rel=1e-12)
    done = run_process(
        "mse", "/dev/stdin", t, "-f", "value", "--dtype", "float64", input=p.read_bytes()
    )
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) == pytest.approx(expected, rel=1e-12)


def test_fifo_is_read_once_and_does_not_hang(big_pair, tmp_path):
    p, t, expected = big_pair
    fifo = tmp_path / "preds.fifo"
    os.mkfifo(fifo)

    def writer():
        with open(fifo, "wb") as out:
            out.write(p.read_bytes())

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    done = run_process("mse", fifo, t, "-f", "value", "--dtype", "float64")
    thread.join(timeout=10)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) == pytest.approx(expected, rel=1e-12)


def test_stdin_named_twice_is_refused(big_pair):
    p, t, _ = big_pair
    done = run_process("mse", "-", "/dev/stdin", input=p.read_bytes())
    assert done.returncode == 2
    assert b"stdin" in done.stderr and b"Traceback" not in done.stderr


def test_a_stream_is_never_memory_mapped(tmp_path):
    array = np.arange(12.0).reshape(4, 3)
    path = tmp_path / "a.npy"
    np.save(path, array)
    from_file = lio.read_input(str(path))
    with open(path, "rb") as stream:
        from_stream = lio.read_input("-", stdin=stream)
    assert isinstance(from_file.array, np.memmap)
    assert not isinstance(from_stream.array, np.memmap)
    np.testing.assert_array_equal(from_stream.array, array)


def test_a_wide_first_row_is_data_not_a_header(tmp_path):
    """A first row wider than any byte prefix (cut on a '-') is still read as data."""
    width = 9000
    rng = np.random.default_rng(3)
    x = np.round(rng.normal(size=(30, width)), 6)
    x[0, :] = -np.abs(x[0, :]) - 1  # every cell of the first row starts with '-'
    y = rng.normal(size=(30, width))
    xp, yp = tmp_path / "x.csv", tmp_path / "y.csv"
    xp.write_text(rows_text(x.tolist()))
    yp.write_text(rows_text(y.tolist()))
    assert xp.stat().st_size > 1 << 20
    got = value_of(run_cli("mse", xp, yp, "-f", "value", "--dtype", "float64"))
    assert got == pytest.approx(np.mean((x - y) ** 2), rel=1e-12)


def _ce_at_size(tmp_path, size, classes, preds_head, label_text, *options):
    """ce over logits and labels written by ``label_text(y)``, small or over 1 MiB, checked
    against the NumPy formula; returns the JSON result."""
    rows = 10 if size == "small" else 200_000
    rng = np.random.default_rng(classes)
    y = rng.integers(0, classes, size=rows)
    x = np.round(rng.normal(size=(rows, classes)), 6)
    labels, preds = tmp_path / "labels.csv", tmp_path / "x.csv"
    labels.write_text(label_text(y))
    preds.write_text(preds_head + rows_text(x.tolist()))
    assert (labels.stat().st_size > 1 << 20) == (size == "large")
    out = run_cli("ce", preds, labels, "-f", "json", "--dtype", "float64", *options)
    assert out.exit_code == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["value"] == pytest.approx(ref.cross_entropy(x, y), rel=1e-12)
    return data


@pytest.mark.parametrize("size", ["small", "large"])
def test_blank_lines_and_headers_mean_the_same_at_any_size(tmp_path, size):
    def text(y):
        return "\n \nlabel\n" + "\n".join(f"{v:08d}" for v in y) + "\n\n"

    data = _ce_at_size(tmp_path, size, 3, "a,b,c\n", text)
    assert data["inputs"]["targets"]["header"] is True


@pytest.mark.parametrize("size", ["small", "large"])
def test_boolean_words_are_class_names_at_any_size(tmp_path, size):
    def text(y):
        return "\n".join(np.where(y == 1, "True", "False")) + "\n"

    data = _ce_at_size(tmp_path, size, 2, "", text, "--classes", "False,True")
    assert data["inputs"]["targets"]["read_as"] == "class names, mapped to indices"


def _pandas_csv(array, index=True) -> str:
    """What pandas' DataFrame(array).to_csv() writes (index column, header of numbers)."""
    array = np.atleast_2d(array.T).T if array.ndim == 1 else array
    head = ([""] if index else []) + [str(i) for i in range(array.shape[1])]
    lines = [",".join(head)]
    for i, row in enumerate(array.tolist()):
        lines.append(",".join(([str(i)] if index else []) + [repr(v) for v in row]))
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("index", [True, False])
def test_pandas_to_csv_files_read_as_their_data(tmp_path, index):
    rng = np.random.default_rng(11)
    x = rng.normal(size=(12, 3))
    y = rng.integers(0, 3, size=12)
    preds, labels = tmp_path / "p.csv", tmp_path / "y.csv"
    preds.write_text(_pandas_csv(x, index=index))
    labels.write_text(_pandas_csv(y.astype(float), index=True))
    out = run_cli("ce", preds, labels, "-f", "json", "--dtype", "float64")
    assert out.exit_code == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["value"] == pytest.approx(ref.cross_entropy(x, y), rel=1e-12)
    assert data["inputs"]["predictions"]["shape"] == [12, 3]
    assert data["inputs"]["targets"]["index_column"] == ""
    assert any("row index" in w for w in data["warnings"])
    assert data["inputs"]["predictions"]["index_column"] == ("" if index else None)


def test_numbered_header_above_a_series_is_hinted_and_can_be_named(tmp_path):
    """pandas writes '0' above an unnamed Series: it cannot be told from a label, so the
    shape error says how to name it a header, and ?header=yes does."""
    rng = np.random.default_rng(12)
    x = rng.normal(size=(6, 3))
    y = rng.integers(0, 3, size=6)
    preds, labels = tmp_path / "p.csv", tmp_path / "y.csv"
    preds.write_text(_pandas_csv(x, index=False))
    labels.write_text("0\n" + "\n".join(map(str, y)) + "\n")
    assert_usage_error(run_cli("ce", preds, labels), "shapes do not match", "?header=yes")
    got = value_of(
        run_cli("ce", preds, f"{labels}?header=yes", "-f", "value", "--dtype", "float64")
    )
    assert got == pytest.approx(ref.cross_entropy(x, y), rel=1e-12)


def single_file_ce(table, pred_cols: str, target_cols: str) -> float:
    args = ["--pred-cols", pred_cols, "--target-cols", target_cols, "-f", "value"]
    return value_of(run_cli("ce", table, *args, "--dtype", "float64"))


def test_column_tokens_are_names_or_indices_never_both(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text(",0,1,2,label\n0,0.5,1.5,2.5,2\n1,3.0,-1.0,0.5,0\n")
    x = np.array([[0.5, 1.5, 2.5], [3.0, -1.0, 0.5]])
    y = np.array([2, 0])
    expected = ref.cross_entropy(x, y)
    assert_usage_error(
        run_cli("ce", table, "--pred-cols", "1,2,3", "--target-cols", "label"),
        "ambiguous",
        "name:1",
        "index:1",
    )
    for cols in ("name:0,name:1,name:2", "index:1,index:2,index:3", "1:4"):
        assert single_file_ce(table, cols, "label") == pytest.approx(expected, rel=1e-12), cols
    assert_usage_error(
        run_cli("ce", table, "--pred-cols", "name:7", "--target-cols", "label"), "'7'"
    )


def test_unselected_columns_may_hold_anything_and_names_work_in_one_file(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("id,cat,dog,label\nr1,2.0,0.5,dog\nr2 x,0.1,0.3,cat\n")
    x = np.array([[2.0, 0.5], [0.1, 0.3]])
    got = single_file_ce(table, "cat,dog", "label")
    assert got == pytest.approx(ref.cross_entropy(x, np.array([1, 0])), rel=1e-12)


def test_reading_options_apply_to_one_input(tmp_path):
    preds = tmp_path / "p.txt"
    preds.write_text("1;2\n3;4\n")
    targets = tmp_path / "t.txt"
    targets.write_text("a b\n1 1\n2 5\n")
    expected = np.mean((np.array([[1, 2], [3, 4]]) - np.array([[1, 1], [2, 5]])) ** 2)
    out = run_cli("mse", f"{preds}?delimiter=;", targets, "-f", "value")
    assert value_of(out) == pytest.approx(expected)
    out = run_cli("mse", preds, f"{targets}?header=yes", "--delimiter", ";", "--no-header")
    assert out.exit_code == 2  # the global ';' does not split the targets' spaces
    assert_usage_error(run_cli("mse", f"{preds}?colour=red", targets), "unknown reading option")


def test_gradient_files_keep_every_column_and_read_back(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text('a,a,"b,c",y1,y2,y3\n1,2,3,0,1,0\n4,5,6,1,0,0\n')
    x = np.array([[1.0, 2, 3], [4, 5, 6]])
    y = np.array([[0.0, 1, 0], [1, 0, 0]])
    expected = 2 * (x - y) / x.size
    for suffix in (".parquet", ".csv"):
        grad = tmp_path / f"g{suffix}"
        out = run_cli(
            "mse",
            table,
            "--pred-cols",
            "0:3",
            "--target-cols",
            "3:6",
            "--grad-out",
            grad,
            "--dtype",
            "float64",
        )
        assert out.exit_code == 0, out.stderr
        if suffix == ".parquet":
            back = pq.read_table(grad)
            assert back.column_names == ["a", "a.1", "b,c"]
            values = np.column_stack([c.to_numpy() for c in back.columns])
        else:
            import csv

            with open(grad, newline="") as handle:
                rows = list(csv.reader(handle))
            assert rows[0] == ["a", "a.1", "b,c"]
            values = np.array(rows[1:], dtype=np.float64)
        np.testing.assert_allclose(values, expected, rtol=1e-15)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_written_files_follow_umask_and_keep_an_existing_mode(tmp_path, mask):
    grad = tmp_path / "g.npy"
    previous = os.umask(mask)
    try:
        lio.write_array(grad, np.ones(3))
        assert stat.S_IMODE(grad.stat().st_mode) == 0o666 & ~mask
        grad.chmod(0o640)
        lio.write_array(grad, np.zeros(3))
        assert stat.S_IMODE(grad.stat().st_mode) == 0o640
    finally:
        os.umask(previous)
    np.testing.assert_array_equal(np.load(grad), np.zeros(3))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_during_the_write_leaves_no_temporary_file(tmp_path, monkeypatch, signum):
    grad = tmp_path / "g.npy"
    grad.write_bytes(b"old")

    def interrupted(self, handle, data):
        handle.write(b"partial")
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Terminated(signum)

    monkeypatch.setattr(lio.write.BlockWriter, "_write", interrupted)
    with pytest.raises((Terminated, KeyboardInterrupt)):
        lio.write_array(grad, np.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.npy"]
    assert grad.read_bytes() == b"old"


def test_parquet_with_repeated_column_names_reads_by_index_and_names_refuse(tmp_path):
    import pyarrow as pa

    path = tmp_path / "dup.parquet"
    table = pa.Table.from_arrays(
        [pa.array([1.0, 2.0]), pa.array([0.5, 1.0]), pa.array(["a", "b"])], names=["v", "v", "id"]
    )
    pq.write_table(table, path)
    got = value_of(
        run_cli("mse", path, "--pred-cols", "index:0", "--target-cols", "index:1", "-f", "value")
    )
    assert got == pytest.approx(np.mean((np.array([1.0, 2.0]) - [0.5, 1.0]) ** 2))
    out = run_cli("mse", path, "--pred-cols", "v", "--target-cols", "index:1")
    assert_usage_error(out, "2 columns are named 'v'", "index:N")


def test_parquet_row_index_stored_by_pandas_is_not_data(tmp_path):
    import pyarrow as pa

    metadata = {b"pandas": json.dumps({"index_columns": ["__index_level_0__"]}).encode()}
    for name, column, values in (("p", "y_hat", [0.5, 1.5, 2.5]), ("t", "y", [0.0, 1.0, 2.0])):
        table = pa.table({column: values, "__index_level_0__": [3, 7, 9]})
        pq.write_table(table.replace_schema_metadata(metadata), tmp_path / f"{name}.parquet")
    out = run_cli("mse", tmp_path / "p.parquet", tmp_path / "t.parquet", "-f", "json")
    assert out.exit_code == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["value"] == pytest.approx(0.25)
    assert data["inputs"]["predictions"]["shape"] == [3]
    assert data["inputs"]["predictions"]["index_column"] == "__index_level_0__"
    assert "row index pandas stored" in out.stderr


def test_parquet_integers_beyond_float_precision_are_read(tmp_path):
    import pyarrow as pa

    table = pa.table(
        {
            "p": pa.array([2**53 + 1, 2, 3], pa.int64()),
            "u": pa.array([2**64 - 1, 1, 2], pa.uint64()),
            "t": [0.0, 1.0, 2.0],
        }
    )
    path = tmp_path / "big.parquet"
    pq.write_table(table, path)
    for column, values in (("p", [2.0**53, 2, 3]), ("u", [2.0**64, 1, 2])):
        got = value_of(
            run_cli(
                "mse",
                path,
                "--pred-cols",
                column,
                "--target-cols",
                "t",
                "-f",
                "value",
                "--dtype",
                "float64",
            )
        )
        assert got == pytest.approx(np.mean((np.array(values) - [0, 1, 2]) ** 2), rel=1e-12)


def test_grad_out_names_at_the_length_limit_and_unwritable_places(tmp_path):
    preds = tmp_path / "p.csv"
    preds.write_text("1\n2\n")
    long_name = tmp_path / ("g" * 250 + ".csv")
    out = run_cli("mse", preds, preds, "--grad-out", long_name, "--dtype", "float64")
    assert out.exit_code == 0, out.stderr
    np.testing.assert_array_equal(np.loadtxt(long_name), [0.0, 0.0])
    assert_usage_error(
        run_cli("mse", preds, preds, "--grad-out", "/proc/losscli.csv"), "cannot write"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["p.csv", long_name.name])


@pytest.mark.parametrize("size", ["small", "large"])
def test_a_nul_byte_in_a_column_not_read_means_the_same_at_any_size(tmp_path, size):
    rows = 20 if size == "small" else 120_000
    lines = ["id,p,t"] + [f"id{i},{i % 7},{i % 5}" for i in range(rows)]
    lines[-3] = "i\0d,1,2"
    path = tmp_path / "t.csv"
    path.write_bytes(("\n".join(lines) + "\n").encode())
    assert (path.stat().st_size > 1 << 20) == (size == "large")
    out = run_cli("mse", path, "--pred-cols", "p", "--target-cols", "t")
    assert_usage_error(out, "NUL")


def test_wide_and_blank_text_files_are_read_without_blowing_up(tmp_path):
    wide = tmp_path / "wide.csv"
    wide.write_bytes(b"1," * 300_000 + b"1\n" + b"2," * 300_000 + b"2\n")
    assert wide.stat().st_size > 1 << 20
    assert value_of(run_cli("mse", wide, wide, "-f", "value")) == 0.0
    blank = tmp_path / "blank.csv"
    blank.write_bytes(b"\n" * 3_000_000 + b"  \r\n" * 1000 + b"4\n5\n")
    out = run_cli("mse", blank, blank, "--per-sample", "-f", "json")
    assert out.exit_code == 0
    data = json.loads(out.stdout)
    assert data["value"] == 0.0 and data["inputs"]["predictions"]["shape"] == [2]
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"\n" * 2_000_000 + b"1\nx\n")
    assert_usage_error(run_cli("mse", bad, bad), "line 2000002", "'x'")


def test_a_file_redirected_to_stdin_may_also_be_named(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("1\n2\n")
    with open(path, "rb") as stdin:
        done = subprocess.run(
            [sys.executable, "-m", "losscli", "mse", path, "-", "-f", "value"],
            stdin=stdin,
            capture_output=True,
            cwd=ROOT,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) == 0.0


def test_a_lone_row_of_class_names_is_data(tmp_path):
    np.save(tmp_path / "x.npy", np.array([[0.2, 1.0]]))
    labels = tmp_path / "y.csv"
    labels.write_text("dog\n")
    out = run_cli(
        "ce",
        tmp_path / "x.npy",
        labels,
        "--classes",
        "cat,dog",
        "-f",
        "value",
        "--dtype",
        "float64",
    )
    assert value_of(out) == pytest.approx(ref.cross_entropy(np.array([[0.2, 1.0]]), np.array([1])))


def test_stdin_twice_through_reading_options_is_refused(tmp_path):
    done = run_process("mse", "--", "-", "-?header=no", input=b"1\n2\n")
    assert done.returncode == 2 and b"only one input can come from stdin" in done.stderr


def test_gradient_csv_names_that_are_numbers_read_back(tmp_path):
    preds = tmp_path / "p.csv"
    preds.write_text("0,1,2\n1.5,0.25,2.5\n0.5,1.0,3.0\n")
    grad = tmp_path / "g.csv"
    out = run_cli("mse", preds, preds, "--grad-out", grad)
    assert out.exit_code == 0, out.stderr
    assert grad.read_text().splitlines()[0] == "grad_0,grad_1,grad_2"
    np.testing.assert_array_equal(np.loadtxt(grad, delimiter=",", skiprows=1), np.zeros((2, 3)))


def test_weight_files_follow_the_reading_options(tmp_path):
    weights = tmp_path / "w.txt"
    weights.write_text("1;2;1;1;0.5\n")
    x = np.loadtxt(LOGITS, delimiter=",")
    y = np.loadtxt(LABELS).astype(int)
    out = run_cli(
        "ce",
        f"{LOGITS}?delimiter=,",
        LABELS,
        "--delimiter",
        ";",
        "--weight",
        weights,
        "-f",
        "value",
        "--dtype",
        "float64",
    )
    assert value_of(out) == pytest.approx(ref.cross_entropy(x, y, [1, 2, 1, 1, 0.5]), rel=1e-12)


def test_a_fifo_named_by_two_paths_is_read_once(tmp_path, big_pair):
    p, t, expected = big_pair
    fifo = tmp_path / "p.fifo"
    os.mkfifo(fifo)
    thread = threading.Thread(target=lambda: fifo.write_bytes(p.read_bytes()), daemon=True)
    thread.start()
    done = run_process("mse", fifo, f"{tmp_path}/./p.fifo", "-f", "value")
    thread.join(timeout=10)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) == 0.0


def test_a_read_only_grad_out_file_is_refused(tmp_path):
    grad = tmp_path / "g.npy"
    grad.write_bytes(b"keep")
    grad.chmod(0o444)
    out = run_cli("mse", SAMPLE / "y_pred.csv", SAMPLE / "y_true.csv", "--grad-out", grad)
    assert_usage_error(out, "read-only")
    assert grad.read_bytes() == b"keep"


def test_parquet_reads_booleans_and_decimals_and_says_what_it_skips(tmp_path):
    import decimal

    import pyarrow as pa

    pq.write_table(
        pa.table(
            {
                "p1": [1.0, 3.0],
                "p2": pa.array(
                    [decimal.Decimal("10.00"), decimal.Decimal("20.00")], pa.decimal128(5, 2)
                ),
                "flag": [True, False],
                "id": ["a", "b"],
            }
        ),
        tmp_path / "p.parquet",
    )
    pq.write_table(pa.table({"t": [[1.0, 0.0, 0.0], [3.0, 0.0, 0.0]]}), tmp_path / "nested.parquet")
    np.save(tmp_path / "t.npy", np.zeros((2, 3)))
    out = run_cli(
        "mse", tmp_path / "p.parquet", tmp_path / "t.npy", "-f", "json", "--dtype", "float64"
    )
    assert out.exit_code == 0, out.stderr
    expected = np.mean(np.array([[1.0, 10.0, 1.0], [3.0, 20.0, 0.0]]) ** 2)
    assert json.loads(out.stdout)["value"] == pytest.approx(expected)
    assert "'id' (string)" in out.stderr
    assert_usage_error(
        run_cli("mse", tmp_path / "nested.parquet", tmp_path / "t.npy"), "--pred-cols"
    )


@pytest.mark.parametrize(
    ("preds", "labels"),
    [('"1.5"\n2\n3\n', '"1"\n2\n4\n'), ("1.5\n2\n3\n", '"1"\n"2"\n"4"\n')],
)
def test_a_one_column_csv_is_still_csv(tmp_path, preds, labels):
    p, t = tmp_path / "p.csv", tmp_path / "t.csv"
    p.write_text(preds)
    t.write_text(labels)
    got = value_of(run_cli("mse", p, t, "-f", "value", "--dtype", "float64"))
    assert got == pytest.approx(np.mean((np.array([1.5, 2, 3]) - [1, 2, 4]) ** 2))
    names = tmp_path / "names.csv"
    names.write_text('"big dog"\ncat\n')
    x = tmp_path / "x.csv"
    x.write_text("cat,big dog\n1,2\n3,4\n")
    got = value_of(run_cli("ce", x, names, "-f", "value", "--dtype", "float64"))
    assert got == pytest.approx(ref.cross_entropy(np.array([[1.0, 2], [3, 4]]), np.array([1, 0])))


def test_a_zero_dimensional_gradient_keeps_its_shape(tmp_path):
    np.save(tmp_path / "x.npy", np.array(2.0))
    np.save(tmp_path / "y.npy", np.array(1.0))
    out = run_cli("mse", tmp_path / "x.npy", tmp_path / "y.npy", "--grad-out", tmp_path / "g.npy")
    assert out.exit_code == 0, out.stderr
    grad = np.load(tmp_path / "g.npy")
    assert grad.shape == () and float(grad) == pytest.approx(2.0)


def test_what_reading_a_weight_file_decided_is_said(tmp_path):
    weights = tmp_path / "w.csv"
    weights.write_text(",w\n0,1\n1,2\n2,1\n3,1\n4,0.5\n")
    out = run_cli("ce", LOGITS, LABELS, "--weight", weights, "-f", "json", "--dtype", "float64")
    assert out.exit_code == 0, out.stderr
    data = json.loads(out.stdout)
    x, y = np.loadtxt(LOGITS, delimiter=","), np.loadtxt(LABELS).astype(int)
    assert data["value"] == pytest.approx(ref.cross_entropy(x, y, [1, 2, 1, 1, 0.5]), rel=1e-12)
    assert any("row index" in w for w in data["warnings"])


def test_a_replaced_file_never_keeps_setuid_bits(tmp_path):
    grad = tmp_path / "g.npy"
    grad.write_bytes(b"old")
    grad.chmod(0o4755)
    lio.write_array(grad, np.ones(2))
    assert stat.S_IMODE(grad.stat().st_mode) == 0o755


# ------------------------------------------------------------ sharded inputs


@pytest.fixture
def shards(tmp_path, rng):
    """Logits and labels split into uneven shards as CSV, Parquet and NPY."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    x = rng.normal(size=(30, 4))
    y = rng.integers(0, 4, size=30)
    for name in ("csv_x", "csv_y", "pq", "npy_x", "npy_y"):
        (tmp_path / name).mkdir()
    for i, part in enumerate([slice(0, 7), slice(7, 25), slice(25, 30)]):
        np.savetxt(tmp_path / "csv_x" / f"part-{i}.csv", x[part], delimiter=",", fmt="%.17g")
        np.savetxt(tmp_path / "csv_y" / f"part-{i}.csv", y[part], fmt="%d")
        table = pa.table({**{f"x{j}": x[part, j] for j in range(4)}, "y": y[part]})
        pq.write_table(table, tmp_path / "pq" / f"part-{i}.parquet")
        np.save(tmp_path / "npy_x" / f"part-{i}.npy", x[part])
        np.save(tmp_path / "npy_y" / f"part-{i}.npy", y[part])
    (tmp_path / "csv_x" / "_SUCCESS").write_text("")
    (tmp_path / "pq" / ".part-0.parquet.crc").write_text("junk")
    return tmp_path, ref_ce(x, y)


def ref_ce(x, y) -> float:
    from tests import reference

    return reference.cross_entropy(x, y)


def test_a_folder_or_pattern_is_one_input_in_sorted_order(shards):
    root, expected = shards
    cases = [
        [root / "csv_x", root / "csv_y"],
        [f"{root}/csv_x/part-*.csv", root / "npy_y"],
        [root / "npy_x", f"{root}/npy_y/*.npy"],
        [root / "pq", "--pred-cols", "0:4", "--target-cols", "y"],
    ]
    for args in cases:
        out = run_cli("ce", *args, "-f", "json", "--dtype", "float64")
        assert out.exit_code == 0, (args, out.stderr)
        data = json.loads(out.stdout)
        assert data["value"] == pytest.approx(expected, rel=1e-12)
        assert data["inputs"]["predictions"]["shards"] == 3
        assert data["inputs"]["predictions"]["shape"] == [30, 4]


def test_shards_that_do_not_agree_are_refused(shards):
    root, _ = shards
    np.save(root / "npy_x" / "part-3.npy", np.zeros((2, 5)))
    assert_usage_error(run_cli("ce", root / "npy_x", root / "npy_y"), "part-3.npy", "[2, 5]")
    empty = root / "empty"
    empty.mkdir()
    assert_usage_error(run_cli("mse", empty, empty), "holds no data files")


def test_grad_out_never_replaces_a_shard(shards):
    root, _ = shards
    shard = root / "csv_x" / "part-1.csv"
    before = shard.read_bytes()
    out = run_cli("ce", root / "csv_x", root / "csv_y", "--grad-out", shard)
    assert_usage_error(out, "a file this run reads")
    assert shard.read_bytes() == before


def test_shards_must_name_the_same_columns_in_the_same_order(tmp_path):
    preds, targets = tmp_path / "p", tmp_path / "t"
    preds.mkdir()
    targets.mkdir()
    (preds / "1.csv").write_text("a,b\n1,0\n1,0\n")
    (preds / "2.csv").write_text("b,a\n0,1\n0,1\n")
    for name in ("1.csv", "2.csv"):
        (targets / name).write_text("a,b\n1,0\n1,0\n")
    assert_usage_error(run_cli("mse", preds, targets), "2.csv", "same columns")
    (preds / "2.csv").write_text("a,b\n1,0\n1,0\n")
    (preds / "3.csv").symlink_to(preds / "1.csv")
    assert_usage_error(run_cli("mse", preds, targets), "same file")


def test_npz_keys_apply_to_every_shard_of_a_pattern(tmp_path):
    for i in range(2):
        np.savez(tmp_path / f"run-{i}.npz", x=np.full(3, float(i)), y=np.zeros(3))
    pattern = f"{tmp_path}/run-*.npz"
    got = value_of(run_cli("mse", f"{pattern}:x", f"{pattern}:y", "-f", "value"))
    assert got == pytest.approx(0.5)


def test_worked_ahead_keeps_the_order_and_raises_where_the_failing_item_is():
    from losscli.io.common import worked_ahead

    def work(n, text):
        if n == 3:
            raise ValueError(f"bad {text}")
        return n * n

    seen = []
    items = ((n, f"item {n}") for n in range(6))
    with pytest.raises(ValueError, match="bad item 3"):
        for n, text, squared in worked_ahead(items, work):
            seen.append((n, text, squared))
    assert seen == [(0, "item 0", 0), (1, "item 1", 1), (2, "item 2", 4)]
    assert list(worked_ahead(iter([]), work)) == []
    assert list(worked_ahead([(5, "x")], work)) == [(5, "x", 25)]


def test_reads_ahead_run_on_kept_threads_side_by_side():
    """A read ahead runs on a thread kept from read to read (hundreds of blocks start no
    hundreds of threads), and reads in flight together run side by side (none waits for
    another to end: two that wait for each other finish)."""
    import threading

    from losscli.io.common import ReadAhead

    def doubled(start: int) -> tuple:
        return start * 2, threading.current_thread()

    done = [ReadAhead(doubled, n).result() for n in range(300)]
    assert [value for value, _ in done] == [n * 2 for n in range(300)]
    assert len({id(thread) for _, thread in done}) <= 2  # (the threads are kept alive here)
    ready = [threading.Event(), threading.Event()]

    def meet(me: int) -> int:
        ready[me].set()
        assert ready[1 - me].wait(timeout=20), "a read waited for another to end"
        return me

    pair = [ReadAhead(meet, 0), ReadAhead(meet, 1)]
    assert [read.result() for read in pair] == [0, 1]
    failing = ReadAhead(lambda start: 1 / start, 0)
    with pytest.raises(ZeroDivisionError):
        failing.result()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded")  # Python 3.12+
def test_a_forked_child_reads_ahead_on_threads_of_its_own():
    """The threads kept for reads ahead are not in a child forked after they started: the
    child starts its own instead of handing a read to a thread that does not exist there."""
    from losscli.io.common import ReadAhead

    assert ReadAhead(lambda start: start + 1, 1).result() == 2  # a thread kept, idle
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's outcome is its exit status
        code = 0
        try:
            code = 0 if ReadAhead(lambda start: start * 3, 3).result() == 9 else 1
        finally:
            os._exit(code)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done, status = os.waitpid(child, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(child, signal.SIGKILL)
    os.waitpid(child, 0)
    pytest.fail("the child's read ahead never ran")


def test_worked_ahead_gives_the_items_before_a_failing_take_first():
    """An error while the next item is taken comes after the item before it is used."""
    from losscli.io.common import worked_ahead

    def items():
        yield (1,)
        yield (2,)
        raise ValueError("the third cannot be read")

    seen = []
    with pytest.raises(ValueError, match="third"):
        for n, doubled in worked_ahead(items(), lambda n: 2 * n):
            seen.append((n, doubled))
    assert seen == [(1, 2), (2, 4)]
