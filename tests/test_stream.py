"""Blocks of rows: a run over blocks equals the run over the whole input, for every loss,
reduction and format, with the same warnings, errors (rows and lines) and gradient files.

The whole-input run is itself checked against NumPy formulas (``test_reference``); here each
case is also checked against its formula directly, so that a block bug cannot hide behind a
whole-input bug.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import losscli.io as lio
from losscli.registry import get_spec
from tests.conftest import (
    SAMPLE,
    assert_usage_error,
    read_back,
    run_cli,
    run_process,
    torch_cuda_available,
)
from tests.test_reference import CASES, _case_id, _reference

STREAMED = [c for c in CASES if get_spec(c.loss).chunkable]


def _run_json(*args) -> dict:
    out = run_cli(*args, "-f", "json")
    assert out.exit_code == 0, out.stderr
    return json.loads(out.stdout)


def _write(tmp_path, case, fmt: str) -> list:
    paths = []
    for position, array in enumerate(case.inputs):
        array = np.asarray(array)
        path = tmp_path / f"{position}.{fmt}"
        if fmt == "npy":
            np.save(path, array)
        elif fmt == "csv":
            rows = array.reshape(len(array), -1)
            path.write_text("\n".join(",".join(repr(float(v)) for v in r) for r in rows) + "\n")
        else:
            rows = array.reshape(len(array), -1)
            columns = {f"c{j}": rows[:, j] for j in range(rows.shape[1])}
            pq.write_table(pa.table(columns), path, row_group_size=5)
        paths.append(path)
    return paths


def option_args(case) -> list[str]:
    """A case's loss options as command-line arguments."""
    out = []
    for name, value in case.options.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            out.append(flag if value else "--no-" + flag[2:])
        else:
            out += [flag, str(value)]
    return out


def _same_result(whole: dict, blocks: dict, rel: float = 1e-9) -> None:
    """The value to 1e-12; the gradient summary to ``rel`` (a float32 gradient computed
    already divided by the denominator, where one block holds the whole input, and divided
    at the end differ in float32's last digit)."""
    np.testing.assert_allclose(
        np.asarray(blocks["value"], dtype=float), np.asarray(whole["value"], dtype=float),
        rtol=1e-12, atol=1e-15,
    )  # fmt: skip
    assert blocks["inputs"] == whole["inputs"]
    assert blocks["warnings"] == whole["warnings"]
    for name, summary in whole["gradient"].items():
        got = blocks["gradient"][name]
        assert got["shape"] == summary["shape"]
        for key in ("norm", "mean", "min", "max"):
            # A mean near 0 (a softmax gradient's) is held to rel times the elements' RMS.
            rms = summary["norm"] / max(math.prod(summary["shape"]), 1) ** 0.5
            assert got[key] == pytest.approx(summary[key], rel=rel, abs=1e-15 + rel * rms), key


@pytest.mark.parametrize("case", STREAMED, ids=_case_id)
def test_blocks_of_rows_equal_the_whole_input_for_every_loss_and_reduction(case, tmp_path):
    fmt = "npy" if any(np.asarray(a).ndim > 2 for a in case.inputs) else "csv"
    paths = _write(tmp_path, case, fmt)
    options = option_args(case)
    for reduction in case.reductions:
        common = [case.loss, *paths, *options, "--reduction", reduction, "--dtype", "float64"]
        whole = _run_json(*common, "--grad-out", tmp_path / "whole.npy")
        expected = _reference(case, case.inputs, reduction)
        np.testing.assert_allclose(np.asarray(whole["value"], dtype=float), expected, rtol=1e-7)
        for rows in ("1", "5", "7"):  # 12 rows: blocks of 1, of 5,5,2 and of 7,5
            got = _run_json(*common, "--block-rows", rows, "--grad-out", tmp_path / "b.npy")
            _same_result(whole, got)
            np.testing.assert_allclose(
                np.load(tmp_path / "b.npy"), np.load(tmp_path / "whole.npy"), rtol=1e-13,
                atol=1e-16, err_msg=f"{reduction}, --block-rows {rows}",
            )  # fmt: skip


@pytest.mark.parametrize("fmt", ["npy", "csv", "parquet"])
def test_every_format_streams_with_the_same_value_and_gradient_file(fmt, tmp_path, classes):
    x, y = classes
    xp, yp = _write(tmp_path, type("C", (), {"inputs": (x, y)}), fmt)
    for suffix in (".npy", ".csv", ".parquet", ".tsv"):
        whole = _run_json("ce", xp, yp, "--grad-out", tmp_path / f"w{suffix}")
        blocks = _run_json("ce", xp, yp, "--block-rows", "3", "--grad-out", tmp_path / f"b{suffix}")
        _same_result(whole, blocks)
        np.testing.assert_array_equal(
            read_back(tmp_path / f"b{suffix}"), read_back(tmp_path / f"w{suffix}")
        )
        expected = np.exp(x - x.max(1, keepdims=True))
        expected /= expected.sum(1, keepdims=True)
        expected[np.arange(len(y)), y] -= 1
        np.testing.assert_allclose(read_back(tmp_path / f"b{suffix}"), expected / len(y), atol=1e-7)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_text_chunks_split_rows_unevenly_and_lines_stay_right(tmp_path, monkeypatch, rng):
    """Chunks of a few bytes (many per block, blocks across chunks), blank lines, CRLF and a
    header: the value is the whole file's, and an error names the right line."""
    x = rng.normal(size=(40, 3))
    y = rng.integers(0, 3, size=40)
    lines = ["a,b,c"] + [",".join(f"{v:.6f}" for v in row) for row in x]
    lines.insert(7, "")
    lines.insert(20, "   ")
    (tmp_path / "x.csv").write_bytes("\r\n".join(lines).encode() + b"\r\n")
    (tmp_path / "y.csv").write_text("\n".join(map(str, y)) + "\n")
    whole = _run_json("ce", tmp_path / "x.csv", tmp_path / "y.csv")
    monkeypatch.setattr(lio.text, "ARROW_BLOCK_BYTES", 37)
    for rows in ("1", "4", "13", "100"):
        got = _run_json("ce", tmp_path / "x.csv", tmp_path / "y.csv", "--block-rows", rows)
        _same_result(whole, got, rel=1e-6)
    bad = lines.copy()
    bad[33] = bad[33].replace(",", ",x", 1)  # line 34 of the file
    (tmp_path / "bad.csv").write_text("\n".join(bad) + "\n")
    out = run_cli("ce", tmp_path / "bad.csv", tmp_path / "y.csv", "--block-rows", "4")
    assert_usage_error(out, "line 34, column 2", "expected a number")


@pytest.mark.parametrize("rows", [None, "1", "3"])
def test_errors_in_a_later_block_give_the_row_and_line_of_the_file(tmp_path, rows):
    x = np.zeros((10, 3))
    y = np.zeros(10, dtype=int)
    y[8] = 7
    (tmp_path / "x.csv").write_text("\n".join("0,0,0" for _ in x) + "\n")
    (tmp_path / "y.csv").write_text("label\n" + "\n".join(map(str, y)) + "\n")
    np.save(tmp_path / "y.npy", y)
    extra = ["--block-rows", rows] if rows else []
    out = run_cli("ce", tmp_path / "x.csv", tmp_path / "y.csv", *extra)
    assert_usage_error(out, "y.csv, row 9 (line 10)", "class index 7.0 is out of range")
    out = run_cli("ce", tmp_path / "x.csv", tmp_path / "y.npy", *extra)
    assert_usage_error(out, "y.npy, row 9:", "class index 7 is out of range")
    nan = np.ones((10, 3))
    nan[6, 2] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    out = run_cli("mse", tmp_path / "nan.npy", tmp_path / "nan.npy", *extra)
    assert_usage_error(out, "row 7, index [6, 2]")


def test_inputs_with_different_row_counts_are_refused_with_both_counts(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((10, 3)))
    np.save(tmp_path / "y.npy", np.zeros(9, dtype=int))
    whole = run_cli("ce", tmp_path / "x.npy", tmp_path / "y.npy")
    assert_usage_error(whole, "shapes do not match", "[10, 3]", "[9]")
    blocks = run_cli("ce", tmp_path / "x.npy", tmp_path / "y.npy", "--block-rows", "4")
    assert_usage_error(blocks, "predictions", "has 10 (shape [10, 3])", "has 9 (shape [9])")
    (tmp_path / "y.csv").write_text("\n".join("0" for _ in range(11)) + "\n")
    for rows in ([], ["--block-rows", "4"], ["--block-rows", "1"]):
        text = run_cli("ce", tmp_path / "x.npy", tmp_path / "y.csv", *rows)
        assert_usage_error(text, "[10, 3]", "[11]", f"line 1 of {tmp_path / 'y.csv'}")
    (tmp_path / "y.csv").write_text("\n".join("0" for _ in range(13)) + "\n")
    text = run_cli("ce", tmp_path / "x.npy", tmp_path / "y.csv", "--block-rows", "4")
    assert_usage_error(text, "has 10", "has 13")
    assert "header=yes" not in text.stderr


def test_whole_input_warnings_are_judged_over_every_block(tmp_path, rng):
    """A warning about the whole input (all targets ignored, predictions that look like
    probabilities) is not said because one block looks so, and is said when all do."""
    probs = rng.dirichlet(np.ones(4), size=12)
    logits = probs.copy()
    logits[10] = [3.0, -2.0, 0.5, 1.0]  # one row of logits in the last block
    y = rng.integers(0, 4, size=12)
    y_ignored = np.full(12, -100)
    y_ignored[11] = 1
    for name, array in (("p", probs), ("l", logits), ("y", y), ("i", y_ignored)):
        np.save(tmp_path / f"{name}.npy", array)
    for rows in (None, "5"):
        extra = ["--block-rows", rows] if rows else []
        said = _run_json("ce", tmp_path / "p.npy", tmp_path / "y.npy", *extra)["warnings"]
        assert any("look like probabilities" in w for w in said)
        mixed = _run_json("ce", tmp_path / "l.npy", tmp_path / "y.npy", *extra)["warnings"]
        assert not any("look like probabilities" in w for w in mixed)
        ignored = _run_json("ce", tmp_path / "l.npy", tmp_path / "i.npy", *extra)["warnings"]
        assert not any("ignore index" in w for w in ignored)
    y_ignored[11] = -100
    np.save(tmp_path / "i.npy", y_ignored)
    said = _run_json("ce", tmp_path / "l.npy", tmp_path / "i.npy", "--block-rows", "5")
    assert any("every target (12 of 12) equals the ignore index" in w for w in said["warnings"])


def test_a_pandas_index_that_stops_counting_in_a_later_chunk_is_refused(tmp_path, monkeypatch):
    lines = ["index,a,b"] + [f"{i},{i * 0.5},{i % 3}" for i in range(30)]
    lines[25] = "99,1.0,2"
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "y.csv").write_text("\n".join("1.0,2.0" for _ in range(30)) + "\n")
    whole = run_cli("mse", tmp_path / "t.csv", tmp_path / "y.csv", "-f", "json")
    assert whole.exit_code == 2  # read as data (3 columns), which does not match 2
    monkeypatch.setattr(lio.text, "ARROW_BLOCK_BYTES", 64)
    out = run_cli("mse", tmp_path / "t.csv", tmp_path / "y.csv")
    assert_usage_error(out, "line 26", "'index'", "does not go on counting")


def test_single_file_mode_and_shards_stream(tmp_path, rng):
    x = rng.normal(size=(20, 2))
    y = rng.normal(size=20)
    table = pa.table({"x": x[:, 0], "y": y})
    (tmp_path / "parts").mkdir()
    pq.write_table(table.slice(0, 7), tmp_path / "parts" / "a.parquet", row_group_size=3)
    pq.write_table(table.slice(7), tmp_path / "parts" / "b.parquet", row_group_size=4)
    args = ["mse", tmp_path / "parts", "--pred-cols", "x", "--target-cols", "y"]
    whole = _run_json(*args)
    blocks = _run_json(*args, "--block-rows", "2")
    _same_result(whole, blocks)
    assert blocks["inputs"]["predictions"]["shards"] == 2
    assert blocks["inputs"]["predictions"]["source"] == f"{tmp_path / 'parts'}[x]"
    assert whole["value"] == pytest.approx(np.mean((x[:, 0] - y) ** 2), rel=1e-6)


def test_stdin_streams_text_and_npy_through_a_real_pipe():
    text = (SAMPLE / "logits.csv").read_bytes()
    args = ("ce", "-", "sample_data/labels.csv", "-f", "value")
    whole = run_process(*args, input=text)
    blocks = run_process(*args, "--block-rows", "3", input=text)
    assert whole.returncode == 0 and blocks.returncode == 0, blocks.stderr
    assert float(blocks.stdout) == pytest.approx(float(whole.stdout), rel=1e-12)


def test_the_progress_bar_never_reaches_a_pipe():
    done = run_process("ce", SAMPLE / "logits.npy", SAMPLE / "labels.npy", "--block-rows", "2")
    assert done.returncode == 0
    assert done.stderr == b""


@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_a_gradient_written_before_its_denominator_is_known_is_right(tmp_path, classes, suffix):
    """--grad-out is written scaled by the denominator the first block foretells (exact for a
    mean over elements); weights and ignored targets that make the foretold one wrong, and a
    first block with nothing counted, are corrected when the run ends."""
    x, y = classes
    y = y.copy()
    y[:4] = -100  # the first block (4 rows) counts nothing
    y[20:] = -100
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    for weight in ("1,1,1,1,1,1", "0.5,2,1,3,1,0.25"):
        w = np.array(weight.split(","), dtype=float)
        for rows in ("4", "5"):
            out = run_cli(
                "ce", tmp_path / "x.npy", tmp_path / "y.npy", "--weight", weight, "--dtype",
                "float64", "--block-rows", rows, "--grad-out", tmp_path / f"g{suffix}",
            )  # fmt: skip
            assert out.exit_code == 0, out.stderr
            p = np.exp(x - x.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            kept = y != -100
            expected = np.zeros_like(x)
            rows_kept = np.flatnonzero(kept)
            expected[rows_kept] = p[rows_kept]
            expected[rows_kept, y[rows_kept]] -= 1
            expected *= np.where(kept, w[np.where(kept, y, 0)], 0.0)[:, None]
            expected /= w[y[kept]].sum()
            np.testing.assert_allclose(
                read_back(tmp_path / f"g{suffix}"), expected, rtol=1e-12, atol=1e-15
            )


@pytest.mark.parametrize("suffix", [".csv", ".npy"])
def test_one_file_named_twice_is_read_at_two_places_at_once(tmp_path, rng, monkeypatch, suffix):
    """Two inputs that are the same file (one descriptor) each read their own blocks."""
    x = rng.normal(size=(50, 3))
    path = tmp_path / f"x{suffix}"
    if suffix == ".npy":
        np.save(path, x)
    else:
        path.write_text("\n".join(",".join(f"{v:.17g}" for v in row) for row in x) + "\n")
    monkeypatch.setattr(lio.text, "ARROW_BLOCK_BYTES", 200)
    monkeypatch.chdir(tmp_path)
    got = _run_json("mse", path.name, f"./{path.name}", "--block-rows", "3", "--dtype", "float64")
    assert got["value"] == 0.0
    assert got["gradient"]["predictions"]["norm"] == 0.0


def test_stdin_is_held_only_a_block_at_a_time(monkeypatch, rng, tmp_path):
    """A stream is read in order and let go of as it goes (text and NPY)."""
    import io

    import losscli
    from losscli.io import sources

    held = []
    fill = sources.StreamFile._fill

    def watched(self, end):
        fill(self, end)
        held.append(len(self.buffer))

    monkeypatch.setattr(sources.StreamFile, "_fill", watched)
    monkeypatch.setattr(lio.text, "ARROW_BLOCK_BYTES", 1 << 16)
    x = rng.normal(size=(60_000, 4)).astype(np.float32)
    text = "\n".join(",".join(f"{v:.6f}" for v in row) for row in x).encode() + b"\n"
    y = rng.normal(size=(60_000, 4)).astype(np.float32)
    from_text = losscli.compute_files(
        "mse", "-", _npy_file(tmp_path, y), stdin=io.BytesIO(text), block_rows=5000
    )
    assert max(held) < len(text) / 8
    held.clear()
    buffer = io.BytesIO()
    np.save(buffer, x)
    from_npy = losscli.compute_files(
        "mse", "-", _npy_file(tmp_path, y), stdin=io.BytesIO(buffer.getvalue()), block_rows=5000
    )
    assert max(held) < x.nbytes / 4
    expected = np.mean((x.astype(np.float64) - y) ** 2)
    assert from_npy.value == pytest.approx(expected, rel=1e-6)
    assert from_text.value == pytest.approx(expected, rel=1e-5)


def _npy_file(folder, array) -> str:
    np.save(folder / "targets.npy", array)
    return str(folder / "targets.npy")


def test_a_stream_that_ends_before_its_npy_header_says_is_refused_where_it_ends(tmp_path):
    buffer = __import__("io").BytesIO()
    np.save(buffer, np.zeros((100, 3), dtype=np.float32))
    cut = buffer.getvalue()[:-50]
    np.save(tmp_path / "y.npy", np.zeros((100, 3), dtype=np.float32))
    done = run_process("mse", "-", tmp_path / "y.npy", "--block-rows", "10", input=cut)
    assert done.returncode == 2
    assert b"promises 1200 bytes of data, it holds 1150" in done.stderr


@pytest.mark.cuda
@pytest.mark.skipif(not torch_cuda_available(), reason="no CUDA device")
def test_cuda_blocks_equal_the_cpu_whole_input(tmp_path, classes):
    x, y = classes
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    args = ["ce", tmp_path / "x.npy", tmp_path / "y.npy", "--dtype", "float64"]
    cpu = _run_json(*args, "--grad-out", tmp_path / "cpu.npy")
    gpu = _run_json(
        *args, "--device", "cuda", "--block-rows", "7", "--grad-out", tmp_path / "gpu.npy"
    )
    assert gpu["device"].startswith("cuda")
    assert gpu["value"] == pytest.approx(cpu["value"], rel=1e-12)
    np.testing.assert_allclose(
        np.load(tmp_path / "gpu.npy"), np.load(tmp_path / "cpu.npy"), rtol=1e-10
    )


def test_a_second_signal_never_cuts_the_cleanup_short(tmp_path, rng):
    """Signals that follow the first (a second Ctrl-C, timeout's TERM to the group) are let
    go: the temporary and spill files are removed, and no traceback is printed."""
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT

    np.save(tmp_path / "x.npy", rng.normal(size=(1_000_000, 10)).astype(np.float32))
    np.save(tmp_path / "y.npy", rng.integers(0, 10, 1_000_000))
    # A text gradient (spilled, then converted) and an NPY one (written by the writer's
    # thread while the next block computes).
    for (signum, code), suffix in zip(((signal.SIGTERM, 143), (signal.SIGINT, 130)) * 2,
                                      (".csv", ".csv", ".npy", ".npy")):  # fmt: skip
        run = subprocess.Popen(
            [sys.executable, "-m", "losscli", "ce", tmp_path / "x.npy", tmp_path / "y.npy",
             "--grad-out", tmp_path / f"g{suffix}", "-f", "value", "--block-rows", "50000"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        time.sleep(4)
        for _ in range(50):
            if run.poll() is not None:
                break
            run.send_signal(signum)
            time.sleep(0.002)
        _, stderr = run.communicate(timeout=120)
        assert run.returncode in (code, 0), stderr
        assert b"Traceback" not in stderr and b"Exception ignored" not in stderr
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_name_hint_about_line_1_only_for_the_file_s_first_row(tmp_path):
    (tmp_path / "p.csv").write_text("1,2,3\n2,3,1\n3,1,2\n0,0,1\n1,1,0\n")
    (tmp_path / "n.csv").write_text("a\nb\nc\na\nd\n")
    for rows in (None, "1", "2"):
        extra = ["--block-rows", rows] if rows else []
        out = run_cli("ce", tmp_path / "p.csv", tmp_path / "n.csv", "--classes", "a,b,c", *extra)
        assert_usage_error(out, "row 5 (line 5): class name 'd' is not a known class")
        assert "header=yes" not in out.stderr


def _stderr_in_terminal(args, feed=None) -> str:
    """stderr of ``python -m losscli ARGS`` written to a pseudo-terminal (stdout to a pipe),
    read while it runs; ``feed()`` runs beside it (it writes a FIFO the run reads)."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios
    import threading

    from tests.conftest import ROOT

    main, side = pty.openpty()
    fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 100, 0, 0))
    env = {**os.environ, "COLUMNS": "100", "TERM": "xterm-256color"}
    process = subprocess.Popen(
        [sys.executable, "-m", "losscli", *map(str, args)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=side, cwd=ROOT, env=env,
    )  # fmt: skip
    os.close(side)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the other side is closed: all is read
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    if feed is not None:
        feed()
    process.wait(timeout=120)
    reader.join(timeout=30)
    os.close(main)
    assert process.returncode == 0
    return b"".join(chunks).decode(errors="replace")


def test_a_short_run_in_a_terminal_shows_no_progress():
    shown = _stderr_in_terminal(["ce", SAMPLE / "logits.csv", SAMPLE / "labels.csv"])
    assert "rows" not in shown


def test_a_long_run_in_a_terminal_shows_progress(tmp_path):
    """An NPY whose blocks arrive over three seconds through a FIFO (read as a stream,
    block by block): the bar appears once the first block is done, with the total rows the
    NPY header gives."""
    import io
    import os
    import time

    rng = np.random.default_rng(3)
    logits = rng.standard_normal((40_000, 5)).astype(np.float32)
    np.save(tmp_path / "y.npy", rng.integers(0, 5, 40_000))
    buffer = io.BytesIO()
    np.save(buffer, logits)
    data = buffer.getvalue()
    fifo = tmp_path / "x.npy"
    os.mkfifo(fifo)

    def feed() -> None:
        with open(fifo, "wb") as out:
            step = len(data) // 4 + 1
            for start in range(0, len(data), step):
                out.write(data[start : start + step])
                out.flush()
                time.sleep(1.0)

    args = ["ce", fifo, tmp_path / "y.npy", "--block-rows", "5000"]
    shown = _stderr_in_terminal(args, feed)
    assert "of 40,000 rows" in shown
