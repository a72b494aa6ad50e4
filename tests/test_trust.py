"""SPEC section 8, class by class: no silent wrong answer, and nothing read is ever written.

Each test covers one class of failure with several cases; values are checked against NumPy
formulas, not against losscli itself.
"""

from __future__ import annotations

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

from losscli import io as lio
from losscli.errors import Terminated
from tests import reference as ref
from tests.conftest import ROOT, SAMPLE, assert_usage_error, run_cli, run_process

LOGITS = SAMPLE / "logits.csv"
LABELS = SAMPLE / "labels.csv"


def value_of(outcome) -> float:
    assert outcome.exit_code == 0, outcome.stderr
    return float(outcome.stdout)


def sample_ce() -> float:
    x = np.loadtxt(LOGITS, delimiter=",")
    return ref.cross_entropy(x, np.loadtxt(LABELS).astype(int))


# ---------------------------------------------------------------- nothing read is written


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


# ---------------------------------------------------------------- streams are read once


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


# ---------------------------------------------------------------- one meaning per file


def _rows_text(rows) -> str:
    return "".join(",".join(map(str, r)) + "\n" for r in rows)


def test_a_wide_first_row_is_data_not_a_header(tmp_path):
    """A first row wider than any byte prefix (cut on a '-') is still read as data."""
    width = 9000
    rng = np.random.default_rng(3)
    x = np.round(rng.normal(size=(30, width)), 6)
    x[0, :] = -np.abs(x[0, :]) - 1  # every cell of the first row starts with '-'
    y = rng.normal(size=(30, width))
    xp, yp = tmp_path / "x.csv", tmp_path / "y.csv"
    xp.write_text(_rows_text(x.tolist()))
    yp.write_text(_rows_text(y.tolist()))
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
    preds.write_text(preds_head + _rows_text(x.tolist()))
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


# ---------------------------------------------------------------- newcomer traps


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


# ---------------------------------------------------------------- values the dtype cannot hold


@pytest.mark.parametrize(
    ("values", "dtype", "fmt"),
    [
        ([1.0, 1e39], "float32", "csv"),
        ([1.0, 1e39], "float32", "npy"),
        ([1.0, 1e5], "float16", "csv"),
        ([1.0, 70000], "float16", "npy-int32"),
        ([1.0, 3.4e38], "bfloat16", "npy"),
    ],
)
def test_values_the_dtype_cannot_hold_are_refused_like_inf(tmp_path, values, dtype, fmt):
    if fmt == "csv":
        preds = tmp_path / "p.csv"
        preds.write_text("\n".join(map(repr, values)) + "\n")
    else:
        preds = tmp_path / "p.npy"
        np.save(preds, np.array(values, dtype=np.int32 if fmt == "npy-int32" else np.float64))
    targets = tmp_path / "t.csv"
    targets.write_text("1\n1\n")
    out = run_cli("mse", preds, targets, "--dtype", dtype)
    assert_usage_error(out, f"{dtype} cannot hold", "row 2", "--allow-nonfinite")
    allowed = run_cli("mse", preds, targets, "--dtype", dtype, "--allow-nonfinite", "-f", "json")
    assert allowed.exit_code == 0, allowed.stderr
    data = json.loads(allowed.stdout)
    assert data["value"] is None  # inf, written as null
    assert any("cannot hold" in w for w in data["warnings"])


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (
            [
                "hinge-embedding",
                "sample_data/distances.csv",
                "sample_data/signs.csv",
                "--margin",
                "nan",
            ],
            "--margin",
        ),
        (
            ["huber", "sample_data/y_pred.csv", "sample_data/y_true.csv", "--delta", "inf"],
            "--delta",
        ),
        (
            [
                "gaussian-nll",
                "sample_data/y_pred.csv",
                "sample_data/y_true.csv",
                "sample_data/var.csv",
                "--eps",
                "nan",
            ],
            "--eps",
        ),
        (["ce", str(LOGITS), str(LABELS), "--label-smoothing", "nan"], "--label-smoothing"),
        (["ce", str(LOGITS), str(LABELS), "--weight", "1,nan,1,1,1"], "--weight"),
        (["ce", str(LOGITS), str(LABELS), "--fail-above", "nan"], "--fail-above"),
        (["ce", str(LOGITS), str(LABELS), "--ignore-index", str(2**70)], "--ignore-index"),
        (["ce", str(LOGITS), str(LABELS), "--delimiter", "ab"], "--delimiter"),
        (
            [
                "ce",
                "sample_data/scores_named.csv",
                "sample_data/labels_named.csv",
                "--classes",
                "cat,cat,dog",
            ],
            "--classes",
        ),
        (["ce", str(LOGITS), f"{LABELS}:key"], ":key"),
        (
            [
                "ctc",
                "sample_data/ctc_log_probs.npy",
                "sample_data/ctc_targets.csv",
                "sample_data/ctc_input_lengths.csv",
                "sample_data/ctc_target_lengths.csv",
                "--blank",
                str(-(2**64)),
            ],
            "--blank",
        ),
    ],
)
def test_option_values_outside_their_domain_are_usage_errors(args, fragment):
    os.chdir(ROOT)
    assert_usage_error(run_cli(*args), fragment)


def test_numpy_warnings_never_reach_stderr(tmp_path):
    logp = tmp_path / "lp.csv"
    logp.write_text("-inf,0\n0,-inf\n")
    out = run_cli("nll", logp, LABELS.parent / "pair_y.csv", "--allow-nonfinite")
    assert "RuntimeWarning" not in out.stderr and "Warning:" not in out.stderr


# ---------------------------------------------------------------- every dtype and shape

SHAPES = [(), (1,), (3,), (3, 1), (3, 4), (2, 3, 4), (0,), (3, 0), (0, 4)]
DTYPES = [
    np.float32,
    np.float16,
    np.int8,
    np.uint64,
    np.int64,
    np.bool_,
    np.longdouble,
    np.dtype(">f8"),
    np.dtype(">i4"),
    np.complex64,
    np.dtype("datetime64[s]"),
]


@pytest.mark.parametrize("loss", sorted(__import__("losscli.registry").registry.all_specs()))
def test_every_shape_and_dtype_is_computed_or_refused(tmp_path, loss):
    """Exit 0 or 2 for every array NumPy can hold; never 70, never a Python warning."""
    from losscli.registry import get_spec

    spec = get_spec(loss)
    rng = np.random.default_rng(0)
    cases = [(s, np.float32) for s in SHAPES] + [((3, 4), d) for d in DTYPES]
    for shape, dtype in cases:
        paths = []
        for i in range(len(spec.inputs)):
            values = rng.random(shape) * 2
            if np.dtype(dtype).kind == "M":
                values = (values * 1e9).astype(np.int64)
            array = np.asarray(values).astype(dtype)
            if len(shape) == 2 and i == 0:
                array = np.asfortranarray(array)
            path = tmp_path / f"{i}.npy"
            np.save(path, array)
            paths.append(path)
        out = run_cli(loss, *paths)
        assert out.exit_code in (0, 2), (shape, dtype, out.stderr)
        if out.exit_code == 2:
            assert_usage_error(out)


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.uint16, np.uint64, np.bool_, np.float16])
@pytest.mark.parametrize("loss", ["mse", "l1", "huber", "bce"])
def test_integer_and_boolean_arrays_are_valid_float_inputs(tmp_path, loss, dtype):
    rng = np.random.default_rng(1)
    preds = (rng.random((5, 2)) > 0.5).astype(dtype)
    targets = rng.random((5, 2))
    np.save(tmp_path / "p.npy", preds)
    np.save(tmp_path / "t.npy", targets)
    got = value_of(
        run_cli(loss, tmp_path / "p.npy", tmp_path / "t.npy", "-f", "value", "--dtype", "float64")
    )
    p = preds.astype(np.float64)
    diff = p - targets
    expected = {
        "mse": np.mean(diff**2),
        "l1": np.mean(np.abs(diff)),
        "huber": np.mean(np.where(np.abs(diff) < 1, 0.5 * diff**2, np.abs(diff) - 0.5)),
        "bce": np.mean(
            -(
                targets * np.maximum(np.log(np.where(p > 0, p, 1)), -100) * (p > 0)
                + targets * -100 * (p == 0)
                + (1 - targets) * (np.maximum(np.log(np.where(p < 1, 1 - p, 1)), -100) * (p < 1))
                + (1 - targets) * -100 * (p == 1)
            )
        ),
    }[loss]
    assert got == pytest.approx(expected, rel=1e-12)


def test_zero_dimensional_arrays_compute_as_torch(tmp_path):
    np.save(tmp_path / "p.npy", np.array(2.5))
    np.save(tmp_path / "t.npy", np.array(1.0))
    got = value_of(run_cli("mse", tmp_path / "p.npy", tmp_path / "t.npy", "-f", "value"))
    assert got == pytest.approx(2.25)
    assert_usage_error(run_cli("ce", tmp_path / "p.npy", tmp_path / "t.npy"), "predictions")


def test_corrupt_array_files_are_refused_without_allocating(tmp_path):
    huge = tmp_path / "huge.npy"
    header = {"descr": "<f8", "fortran_order": False, "shape": (10**11,)}
    with open(huge, "wb") as out:
        np.lib.format.write_array_header_1_0(out, header)
        out.write(b"\0" * 64)
    assert_usage_error(run_cli("mse", huge, huge), "not a valid NPY file", "promises")
    import zipfile

    odd = tmp_path / "odd.npz"
    with zipfile.ZipFile(odd, "w") as archive:
        archive.writestr("notes.txt", "hello")
        archive.writestr("x.npy", b"\x93NUMPY garbage")
    assert_usage_error(run_cli("mse", f"{odd}:notes.txt", f"{odd}:x"), "not an NPY array")
    assert_usage_error(run_cli("mse", f"{odd}:x", f"{odd}:x"), "not a valid NPZ file")


# ---------------------------------------------------------------- messages stay one line


@pytest.mark.parametrize(
    "name", ["evil\nlosscli: error: forged.csv", "bell\x07\x1b[31mred.csv", "rtl\u202eosc.csv"]
)
def test_data_text_is_escaped_in_messages_and_tables(tmp_path, name):
    path = tmp_path / name
    path.write_text("1,2\n3,x\n")
    out = run_cli("mse", path, path)
    assert out.exit_code == 2
    assert len(out.stderr.splitlines()) == 1, out.stderr
    assert "\x1b" not in out.stderr and "\x07" not in out.stderr and "\u202e" not in out.stderr
    good = tmp_path / (name + ".ok.csv")
    good.write_text("1,2\n3,4\n")
    table = run_cli("mse", good, good)
    assert table.exit_code == 0, table.stderr
    for raw in ("\n", "\x1b", "\x07", "\u202e"):
        if raw in name:
            assert (
                raw not in table.stdout.replace("\n", "")
                if raw == "\n"
                else raw not in table.stdout
            )
    assert len([line for line in table.stdout.splitlines() if "ok.csv" in line]) == 2


def test_header_and_npz_key_text_is_escaped(tmp_path):
    header = tmp_path / "h.csv"
    header.write_text("a\nb,c\x1b[31m\n1,2\n")
    out = run_cli("mse", header, header, "--pred-cols", "zz", "--target-cols", "c")
    assert out.exit_code == 2
    assert len(out.stderr.splitlines()) == 1 and "\x1b" not in out.stderr
    npz = tmp_path / "k.npz"
    np.savez(npz, **{"a\nb": np.ones(2), "c": np.ones(2)})
    out = run_cli("mse", npz, npz)
    assert_usage_error(out, "a\\x0ab")


# ---------------------------------------------------------------- files written


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

    def interrupted(out, array):
        out.write(b"partial")
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Terminated(signum)

    monkeypatch.setattr(np, "save", interrupted)
    with pytest.raises((Terminated, KeyboardInterrupt)):
        lio.write_array(grad, np.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.npy"]
    assert grad.read_bytes() == b"old"


def test_sigterm_ends_a_real_run_cleanly(tmp_path):
    rng = np.random.default_rng(2)
    preds = tmp_path / "p.npy"
    np.save(preds, rng.normal(size=(400_000, 10)).astype(np.float32))
    np.save(tmp_path / "y.npy", rng.integers(0, 10, size=400_000))
    for delay in (0.3, 1.0, 2.0):
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "losscli",
                "ce",
                preds,
                tmp_path / "y.npy",
                "--grad-out",
                tmp_path / "g.csv",
                "-q",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        time.sleep(delay)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=120)
        assert process.returncode in (0, 128 + signal.SIGTERM), err
        assert b"Traceback" not in err
        assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# ---------------------------------------------------------------- closed and narrow streams


def _shell(command: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", command],
        capture_output=True,
        cwd=ROOT,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_closed_and_narrow_streams_keep_exit_codes():
    python = f'"{sys.executable}" -m losscli'
    ok = f"{python} ce {LOGITS} {LABELS}"
    bad = f"{python} ce {LOGITS} /nonexistent.csv"
    assert _shell(f"{ok} >&-").returncode == 0
    assert _shell(f"{bad} 2>&-").returncode == 2
    closed_stdin = _shell(f"{python} ce - {LABELS} <&-")
    assert closed_stdin.returncode == 2
    assert b"closed" in closed_stdin.stderr and b"terminal" not in closed_stdin.stderr
    ascii_run = _shell(f"{ok} --per-sample", env={"PYTHONIOENCODING": "ascii"})
    assert ascii_run.returncode == 0, ascii_run.stderr
    help_head = _shell(f"{python} --help | head -1; exit ${{PIPESTATUS[0]}}")
    assert help_head.returncode == 0, help_head.stderr
    assert b"Traceback" not in help_head.stderr and b"Exception" not in help_head.stderr


def test_environment_errors_name_the_variable():
    done = run_process("ce", LOGITS, LABELS, env={**os.environ, "LOSSCLI_DEVICE": "tpu"})
    assert done.returncode == 2
    assert done.stderr.decode().startswith("losscli: error: LOSSCLI_DEVICE=tpu: ")


# ---------------------------------------------------------------- gates, sums, and torch's edges


def test_a_tripped_gate_says_so():
    out = run_cli("ce", LOGITS, LABELS, "-f", "json", "--fail-above", "0.5")
    assert out.exit_code == 1
    value = json.loads(out.stdout)["value"]
    assert value == pytest.approx(sample_ce(), rel=1e-6)
    assert out.stderr == f"losscli: gate: loss {value!r} is above 0.5\n"
    gate = json.loads(out.stdout)["gate"]
    assert gate["tripped"] is True and gate["fail_above"] == 0.5
    passed = run_cli("ce", LOGITS, LABELS, "-f", "json", "--fail-below", "0.5")
    assert passed.exit_code == 0 and "gate" not in passed.stderr
    assert json.loads(passed.stdout)["gate"]["tripped"] is False


def test_block_sums_are_accumulated_in_float64(tmp_path):
    """1e8 + 999 ones: float32 sums drop the ones (the spacing of floats at 1e8 is 8)."""
    preds = np.ones(1000, dtype=np.float32)
    preds[0] = 1e8 + 1
    np.save(tmp_path / "p.npy", preds)
    np.save(tmp_path / "t.npy", np.ones(1000, dtype=np.float32))
    np.save(tmp_path / "q.npy", np.zeros(1000, dtype=np.float32))
    got = value_of(
        run_cli("l1", tmp_path / "p.npy", tmp_path / "q.npy", "-r", "sum", "-f", "value")
    )
    assert got == float(np.float32(1e8 + 1)) + 999


def test_nll_with_every_target_ignored_has_zero_gradient(tmp_path):
    logp = tmp_path / "lp.csv"
    logp.write_text("-0.5,-1.2\n-2.0,-0.1\n")
    labels = tmp_path / "y.csv"
    labels.write_text("-100\n-100\n")
    grad = tmp_path / "g.npy"
    out = run_cli("nll", logp, labels, "--grad-out", grad, "-f", "json")
    assert out.exit_code == 0, out.stderr
    assert json.loads(out.stdout)["value"] is None
    np.testing.assert_array_equal(np.load(grad), np.zeros((2, 2)))


def test_ctc_gradient_keeps_the_shape_of_two_dimensional_log_probs(tmp_path):
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(6, 4))
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    np.save(tmp_path / "lp.npy", log_probs)
    (tmp_path / "t.csv").write_text("1\n2\n")
    (tmp_path / "il.csv").write_text("6\n")
    (tmp_path / "tl.csv").write_text("2\n")
    grad = tmp_path / "g.npy"
    out = run_cli(
        "ctc",
        tmp_path / "lp.npy",
        tmp_path / "t.csv",
        tmp_path / "il.csv",
        tmp_path / "tl.csv",
        "--grad-out",
        grad,
    )
    assert out.exit_code == 0, out.stderr
    assert np.load(grad).shape == (6, 4)


@pytest.mark.parametrize("decimals", [2, 3])
def test_rounded_probabilities_given_to_ce_are_noticed(tmp_path, decimals):
    rng = np.random.default_rng(decimals)
    logits = rng.normal(size=(40, 7))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    path = tmp_path / "p.csv"
    path.write_text(_rows_text(np.round(probs, decimals).tolist()))
    labels = tmp_path / "y.csv"
    labels.write_text("\n".join(map(str, rng.integers(0, 7, size=40))) + "\n")
    out = run_cli("ce", path, labels)
    assert out.exit_code == 0
    assert "look like probabilities" in out.stderr


def test_ce_integer_one_hot_targets_are_class_probabilities(tmp_path):
    rng = np.random.default_rng(9)
    x = rng.normal(size=(6, 3))
    y = rng.integers(0, 3, size=6)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "onehot.npy", np.eye(3, dtype=np.int64)[y])
    out = run_cli(
        "ce", tmp_path / "x.npy", tmp_path / "onehot.npy", "-f", "json", "--dtype", "float64"
    )
    assert out.exit_code == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["value"] == pytest.approx(ref.cross_entropy(x, y), rel=1e-12)
    assert data["inputs"]["targets"]["read_as"] == "class probabilities"
    refused = run_cli("ce", tmp_path / "x.npy", tmp_path / "onehot.npy", "--ignore-index", "0")
    assert_usage_error(refused, "--ignore-index", "class-probability targets")


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


def test_class_names_in_messages_are_plain_text(tmp_path):
    np.save(tmp_path / "y.npy", np.array(["cat", "emu"]))
    np.save(tmp_path / "x.npy", np.zeros((2, 2)))
    out = run_cli("ce", tmp_path / "x.npy", tmp_path / "y.npy", "--classes", "cat,dog")
    assert_usage_error(out, "class name 'emu' is not a known class", "'cat', 'dog'")
    assert "np.str_" not in out.stderr


def test_compute_files_reads_as_the_command_line_does(tmp_path):
    import losscli

    result = losscli.compute_files(
        "ce", str(LOGITS), str(LABELS), dtype="float64", reduction="sum", fail_above=1.0
    )
    x = np.loadtxt(LOGITS, delimiter=",")
    expected = ref.cross_entropy(x, np.loadtxt(LABELS).astype(int)) * len(x)
    assert result.value == pytest.approx(expected, rel=1e-12)
    assert result.gate["tripped"] is True


# ---------------------------------------------------------------- found by a hostile review


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


@pytest.mark.parametrize(
    ("labels", "ignore"),
    [
        (np.array([2**64 - 1, 1], dtype=np.uint64), "-1"),
        (np.array([2**64 - 1, 1], dtype=np.uint64), "-100"),
        (np.array([1e19, 1.0]), str(-(2**63))),
        (np.array([-(2.0**63), 1.0]), "-1"),
    ],
)
def test_labels_beyond_int64_are_out_of_range_not_wrapped(tmp_path, labels, ignore):
    np.save(tmp_path / "x.npy", np.array([[1.0, 2.0], [3.0, 5.0]]))
    np.save(tmp_path / "y.npy", labels)
    out = run_cli("ce", tmp_path / "x.npy", tmp_path / "y.npy", "--ignore-index", ignore)
    assert_usage_error(out, "row 1", "out of range")


@pytest.mark.parametrize(
    ("value", "dtype"), [(65519.9999, "float16"), (3.39617745e38, "bfloat16"), (3.5e38, "float32")]
)
def test_values_that_round_to_inf_through_float32_are_refused(tmp_path, value, dtype):
    np.save(tmp_path / "p.npy", np.array([value, 1.0]))
    np.save(tmp_path / "t.npy", np.array([0.0, 1.0]))
    assert_usage_error(
        run_cli("mse", tmp_path / "p.npy", tmp_path / "t.npy", "--dtype", dtype), "cannot hold"
    )


@pytest.mark.parametrize("label", ["\u0661", "1_0", "0x1"])
def test_class_labels_follow_the_number_syntax(tmp_path, label):
    preds = tmp_path / "x.csv"
    preds.write_text("cat,dog\n1,2\n3,4\n5,6\n")
    labels = tmp_path / "y.csv"
    labels.write_text(f"dog\ncat\n{label}\n")
    assert_usage_error(run_cli("ce", preds, labels), f"class name {label!r} is not a known class")


def test_classes_that_cannot_apply_are_said_to_be_unused(tmp_path):
    out = run_cli("ce", LOGITS, LABELS, "--classes", "a,b,c,d,e")
    assert out.exit_code == 0
    assert "--classes is not used" in out.stderr


def test_decimal_commas_are_pointed_out(tmp_path):
    path = tmp_path / "de.csv"
    path.write_text("0,5\n1,25\n2,75\n")
    out = run_cli("mse", path, path)
    assert out.exit_code == 0
    assert "decimal point" in out.stderr


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


def test_lying_or_odd_array_files_are_clear_errors(tmp_path):
    import zipfile

    good = tmp_path / "t.npy"
    np.save(good, np.zeros((3, 2)))
    for shape in (b"(-1, 2)", b"(3, 2**60)", b"(3, 'x')"):
        bad = tmp_path / "bad.npy"
        bad.write_bytes(good.read_bytes().replace(b"(3, 2)", shape.ljust(6)))
        assert_usage_error(run_cli("mse", bad, good), "not a valid NPY file")
        done = run_process("mse", "-", good, input=bad.read_bytes())
        assert done.returncode == 2 and b"not a valid NPY file" in done.stderr
    colon = tmp_path / "colon.npz"
    np.savez(colon, **{"a:b": np.ones(3), "c": np.zeros(3)})
    assert value_of(run_cli("mse", f"{colon}:a:b", f"{colon}:c", "-f", "value")) == 1.0
    twice = tmp_path / "twice.npz"
    with zipfile.ZipFile(twice, "w") as archive, pytest.warns(UserWarning, match="Duplicate"):
        for fill in (1, 2):
            buffer = __import__("io").BytesIO()
            np.save(buffer, np.full(3, fill))
            archive.writestr("x.npy", buffer.getvalue())
    assert_usage_error(run_cli("mse", twice, twice), "two arrays named x")


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


def test_python_api_refuses_empty_inputs_and_keeps_stderr_clean(capfd):
    import losscli
    from losscli.errors import LossCliError

    with pytest.raises(LossCliError, match="has no data"):
        losscli.compute("multilabel-margin", np.zeros((3, 0)), np.zeros((3, 0), dtype=int))
    x = np.log(np.full((2, 3), 1 / 3))
    losscli.compute("kl-div", x, np.full((2, 3), 1 / 3), reduction="mean")
    assert capfd.readouterr().err == ""


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


def test_a_mean_over_zero_weight_is_nan_as_in_torch(tmp_path):
    import torch

    x = np.array([[0.1, 2.0, -1.0], [1.0, 0.5, 0.3]])
    y = np.array([0, 0])
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    out = run_cli(
        "ce",
        tmp_path / "x.npy",
        tmp_path / "y.npy",
        "--weight",
        "0,1,1",
        "--label-smoothing",
        "0.5",
        "-f",
        "json",
        "--dtype",
        "float64",
    )
    expected = torch.nn.functional.cross_entropy(
        torch.tensor(x),
        torch.tensor(y),
        weight=torch.tensor([0.0, 1, 1], dtype=torch.float64),
        label_smoothing=0.5,
    ).item()
    assert out.exit_code == 0, out.stderr
    assert np.isnan(expected)
    assert json.loads(out.stdout)["value"] is None  # NaN, written as null
    assert "NaN or inf" in " ".join(json.loads(out.stdout)["warnings"])


# ---------------------------------------------------------------- found by a review of the diff


def test_a_column_named_index_that_holds_text_is_data_not_a_crash(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("index,p,t\nr1,0.5,1\nr2,0.2,0\n")
    assert_usage_error(run_cli("mse", path, path), "found 'r1'")
    got = value_of(run_cli("mse", path, "--pred-cols", "p", "--target-cols", "t", "-f", "value"))
    assert got == pytest.approx(np.mean((np.array([0.5, 0.2]) - [1, 0]) ** 2))


@pytest.mark.parametrize(
    ("loss", "preds", "targets", "dtype"),
    [
        ("poisson-nll", "0.5\n0.2\n", "3\n100000\n", "float16"),
        ("soft-margin", "0.5\n0.2\n", "1\n1e39\n", "float32"),
        ("ce", "0.5,0.5\n0.2,0.8\n", "0.5,0.5\n1e39,0\n", "float32"),
    ],
)
def test_targets_computed_in_the_dtype_are_checked_too(tmp_path, loss, preds, targets, dtype):
    p, t = tmp_path / "p.csv", tmp_path / "t.csv"
    p.write_text(preds)
    t.write_text(targets)
    assert_usage_error(run_cli(loss, p, t, "--dtype", dtype), "cannot hold", "row 2")


def test_a_counting_first_row_over_integers_is_pointed_out(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("0,1,2\n1,0,3\n2,2,1\n")
    out = run_cli("mse", path, path, "-f", "json")
    assert out.exit_code == 0
    assert "may be a header of column numbers" in out.stderr and "?header=yes" in out.stderr


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


def test_an_empty_axis_is_named_as_such(tmp_path):
    np.save(tmp_path / "e.npy", np.zeros((3, 0)))
    assert_usage_error(run_cli("mse", tmp_path / "e.npy", tmp_path / "e.npy"), "an empty axis")


def test_compute_files_reads_stdin_from_a_given_file(tmp_path):
    import io

    import losscli

    result = losscli.compute_files(
        "mse",
        "-",
        str(SAMPLE / "y_true.csv"),
        stdin=io.BytesIO((SAMPLE / "y_pred.csv").read_bytes()),
    )
    expected = losscli.compute_files("mse", str(SAMPLE / "y_pred.csv"), str(SAMPLE / "y_true.csv"))
    assert result.value == expected.value


def test_a_read_only_grad_out_file_is_refused(tmp_path):
    grad = tmp_path / "g.npy"
    grad.write_bytes(b"keep")
    grad.chmod(0o444)
    out = run_cli("mse", SAMPLE / "y_pred.csv", SAMPLE / "y_true.csv", "--grad-out", grad)
    assert_usage_error(out, "read-only")
    assert grad.read_bytes() == b"keep"


# ---------------------------------------------------------------- found by a second hostile round


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


def test_python_api_takes_paths_and_lists_and_refuses_odd_values(tmp_path):
    import pathlib

    import losscli
    from losscli.errors import OptionError

    table = SAMPLE / "table.csv"
    result = losscli.compute_files(
        "mse", pathlib.Path(table), pred_cols=["y_hat"], target_cols=["y"]
    )
    expected = losscli.compute_files("mse", str(table), pred_cols="y_hat", target_cols="y")
    assert result.value == expected.value
    for options in ({"ignore_index": 0.5}, {"ignore_index": True}, {"label_smoothing": "abc"}):
        with pytest.raises(OptionError):
            losscli.compute_files("ce", str(LOGITS), str(LABELS), **options)


def test_a_replaced_file_never_keeps_setuid_bits(tmp_path):
    grad = tmp_path / "g.npy"
    grad.write_bytes(b"old")
    grad.chmod(0o4755)
    lio.write_array(grad, np.ones(2))
    assert stat.S_IMODE(grad.stat().st_mode) == 0o755
