"""--dask: the same computation as tasks on a Dask cluster, equal to the single-process run.

Most tests use ``--dask local`` (a cluster of threads in the test's process); one starts a
scheduler and two worker processes the way the README tells users to, on 127.0.0.1, and
stops them; one kills a worker in the middle of a run.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import losscli
from tests.conftest import ROOT, assert_usage_error, run_cli

pytest.importorskip("distributed")


def _shards(tmp_path, sizes, rng, classes=5):
    (tmp_path / "p").mkdir()
    (tmp_path / "y").mkdir()
    xs, ys = [], []
    for i, n in enumerate(sizes):
        x = rng.normal(size=(n, classes))
        y = rng.integers(0, classes, n)
        y[::7] = -100
        np.save(tmp_path / "p" / f"part-{i:02d}.npy", x)
        np.save(tmp_path / "y" / f"part-{i:02d}.npy", y)
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def _json(*args) -> dict:
    out = run_cli(*args, "-f", "json")
    assert out.exit_code == 0, out.stderr
    return json.loads(out.stdout)


def test_local_cluster_equals_one_process_value_gradient_and_state(tmp_path, rng):
    x, y = _shards(tmp_path, [40, 7, 101, 23], rng)
    args = ["ce", tmp_path / "p", tmp_path / "y", "--weight", "1,2,0.5,1,3", "--dtype", "float64"]
    one = _json(*args, "--grad-out", tmp_path / "whole.npy")
    many = _json(*args, "--dask", "local", "--grad-out", f"{tmp_path / 'grads'}/",
                 "--emit-state", tmp_path / "state.json")  # fmt: skip
    assert many["value"] == pytest.approx(one["value"], rel=1e-12)
    for key in ("norm", "mean", "min", "max"):
        got, want = many["gradient"]["predictions"][key], one["gradient"]["predictions"][key]
        assert got == pytest.approx(want, rel=1e-9, abs=1e-15)
    assert many["inputs"]["predictions"]["shape"] == [len(x), 5]
    parts = sorted((tmp_path / "grads").iterdir())
    assert [p.name for p in parts] == [f"part-{i:02d}.npy" for i in range(4)]
    joined = np.concatenate([np.load(p) for p in parts])
    np.testing.assert_allclose(joined, np.load(tmp_path / "whole.npy"), rtol=1e-12, atol=1e-18)
    # And against NumPy: weighted mean of -log softmax over the targets that count.
    w = np.array([1, 2, 0.5, 1, 3])
    logp = x - np.log(np.exp(x).sum(1, keepdims=True))
    kept = y != -100
    expected = -(w[y[kept]] * logp[kept, y[kept]]).sum() / w[y[kept]].sum()
    assert many["value"] == pytest.approx(expected, rel=1e-12)
    merged = run_cli("merge", tmp_path / "state.json", "-f", "value")
    assert float(merged.stdout) == pytest.approx(one["value"], rel=1e-12)


def test_a_lone_parquet_file_is_one_task_per_row_group(tmp_path, rng):
    x = rng.normal(size=300)
    y = rng.normal(size=300)
    pq.write_table(pa.table({"x": x, "y": y}), tmp_path / "t.parquet", row_group_size=70)
    args = ["mse", tmp_path / "t.parquet", "--pred-cols", "x", "--target-cols", "y"]
    many = _json(*args, "--dask", "local", "--dtype", "float64", "--grad-out", f"{tmp_path}/g/")
    assert many["value"] == pytest.approx(np.mean((x - y) ** 2), rel=1e-12)
    assert many["inputs"]["predictions"]["shards"] == 5
    joined = np.concatenate([np.load(p) for p in sorted((tmp_path / "g").iterdir())])
    np.testing.assert_allclose(joined, 2 * (x - y) / 300, rtol=1e-12)


def test_fsspec_urls_are_read_on_the_workers():
    import fsspec

    fs = fsspec.filesystem("memory")
    rng = np.random.default_rng(5)
    xs, ys = [], []
    for i in range(3):
        x, y = rng.normal(size=(10 + i, 3)), rng.integers(0, 3, 10 + i)
        for folder, array in (("preds", x), ("labels", y)):
            buffer = io.BytesIO()
            np.save(buffer, array)
            fs.pipe(f"/losscli-test/{folder}/s{i}.npy", buffer.getvalue())
        xs.append(x)
        ys.append(y)
    try:
        urls = ("memory://losscli-test/preds", "memory://losscli-test/labels")
        result = losscli.compute_files("ce", *urls, dask="local", dtype="float64")
        whole = losscli.compute("ce", np.concatenate(xs), np.concatenate(ys), dtype="float64")
        assert result.value == pytest.approx(whole.value, rel=1e-12)
        assert result.inputs["predictions"]["shards"] == 3
    finally:
        fs.rm("/losscli-test", recursive=True)


def test_what_dask_cannot_run_is_refused(tmp_path, rng, monkeypatch):
    _shards(tmp_path, [5, 6], rng)
    np.save(tmp_path / "one.npy", np.zeros(11, dtype=int))
    uneven = run_cli("ce", tmp_path / "p", tmp_path / "one.npy", "--dask", "local")
    assert_usage_error(uneven, "as many shards", "2 shards", "one file")
    named_file = run_cli("ce", tmp_path / "p", tmp_path / "y", "--dask", "local",
                         "--grad-out", tmp_path / "g.npy")  # fmt: skip
    assert_usage_error(named_file, "give a folder")
    none = run_cli("ce", tmp_path / "p", tmp_path / "y", "--dask", "local", "-r", "none")
    assert_usage_error(none, "reduced loss")
    monkeypatch.setitem(sys.modules, "distributed", None)
    missing = run_cli("ce", tmp_path / "p", tmp_path / "y", "--dask", "local")
    assert_usage_error(missing, "pip install 'losscli[dask]'")
    monkeypatch.delitem(sys.modules, "distributed")
    from losscli import cluster

    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 2)  # port 1: nobody listens there
    bad = run_cli("ce", tmp_path / "p", tmp_path / "y", "--dask", "tcp://127.0.0.1:1")
    assert_usage_error(bad, "cannot reach the scheduler")


def test_an_error_in_one_task_names_its_shard(tmp_path, rng):
    _shards(tmp_path, [5, 6, 4], rng)
    np.save(tmp_path / "y" / "part-01.npy", np.array([0, 1, 9, 0, 1, 2]))
    out = run_cli("ce", tmp_path / "p", tmp_path / "y", "--dask", "local")
    assert_usage_error(out, "part-01.npy, row 3", "class index 9 is out of range")


class _Cluster:
    """A scheduler and worker processes started with Dask's own commands, on 127.0.0.1."""

    def __init__(self, tmp_path, workers: int):
        self.env = {**os.environ, "PYTHONPATH": str(ROOT)}
        bin_dir = os.path.dirname(sys.executable)
        scheduler_file = tmp_path / "scheduler.json"
        common = ["--no-dashboard", "--host", "127.0.0.1"]
        self.processes = [
            subprocess.Popen(
                [
                    os.path.join(bin_dir, "dask"),
                    "scheduler",
                    *common,
                    "--port",
                    "0",
                    "--scheduler-file",
                    str(scheduler_file),
                ],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
        ]
        deadline = time.time() + 60
        while not scheduler_file.exists() and time.time() < deadline:
            time.sleep(0.2)
        self.address = json.loads(scheduler_file.read_text())["address"]
        self.workers = [
            subprocess.Popen(
                [
                    os.path.join(bin_dir, "dask"),
                    "worker",
                    self.address,
                    *common,
                    "--nthreads",
                    "1",
                    "--nworkers",
                    "1",
                    "--death-timeout",
                    "30",
                ],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            for _ in range(workers)
        ]
        self.processes += self.workers
        from distributed import Client

        with Client(self.address, timeout=60) as client:
            client.wait_for_workers(workers, timeout=120)

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture
def cluster(tmp_path):
    started = _Cluster(tmp_path, workers=2)
    try:
        yield started
    finally:
        started.stop()


def test_a_scheduler_and_two_worker_processes_started_as_the_readme_says(tmp_path, rng, cluster):
    x, y = _shards(tmp_path, [30, 11, 52], rng)
    args = ["ce", tmp_path / "p", tmp_path / "y", "--dtype", "float64", "-f", "json"]
    done = subprocess.run(
        [sys.executable, "-m", "losscli", *map(str, args), "--dask", cluster.address,
         "--grad-out", f"{tmp_path / 'g'}/"],
        capture_output=True, env=cluster.env, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    many = json.loads(done.stdout)
    one = _json(*args[:-2], "--grad-out", tmp_path / "whole.npy")
    assert many["value"] == pytest.approx(one["value"], rel=1e-12)
    joined = np.concatenate([np.load(p) for p in sorted((tmp_path / "g").iterdir())])
    np.testing.assert_allclose(joined, np.load(tmp_path / "whole.npy"), rtol=1e-12, atol=1e-18)


def test_a_worker_killed_mid_run_gives_the_right_value_or_exit_2(tmp_path, rng, cluster):
    x, y = _shards(tmp_path, [150_000] * 8, rng)
    args = ["ce", tmp_path / "p", tmp_path / "y", "--dtype", "float64", "-f", "json"]
    run = subprocess.Popen(
        [sys.executable, "-m", "losscli", *map(str, args), "--dask", cluster.address],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cluster.env, cwd=ROOT,
    )  # fmt: skip
    time.sleep(3)
    cluster.workers[0].send_signal(signal.SIGKILL)
    stdout, stderr = run.communicate(timeout=300)
    if run.returncode == 0:
        one = _json(*args[:-2])
        assert json.loads(stdout)["value"] == pytest.approx(one["value"], rel=1e-12)
    else:
        assert run.returncode == 2, stderr
        assert b"worker died" in stderr and b"Traceback" not in stderr


def test_lone_npy_files_are_one_task_per_range_of_rows(tmp_path, rng, monkeypatch):
    from losscli import cluster

    monkeypatch.setattr(cluster, "TASK_ROWS", 40)
    x, y = rng.normal(size=(130, 4)), rng.integers(0, 4, 130)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    args = ["ce", tmp_path / "x.npy", tmp_path / "y.npy", "--dtype", "float64"]
    one = _json(*args, "--grad-out", tmp_path / "whole.npy")
    many = _json(*args, "--dask", "local", "--grad-out", f"{tmp_path / 'g'}/")
    assert many["value"] == pytest.approx(one["value"], rel=1e-12)
    assert many["inputs"]["predictions"]["shards"] == 4
    names = sorted(p.name for p in (tmp_path / "g").iterdir())
    assert names == ["x.rows000-040.npy", "x.rows040-080.npy", "x.rows080-120.npy",
                     "x.rows120-130.npy"]  # fmt: skip
    joined = np.concatenate([np.load(tmp_path / "g" / n) for n in names])
    np.testing.assert_allclose(joined, np.load(tmp_path / "whole.npy"), rtol=1e-12, atol=1e-18)


def test_the_rows_reading_option_reads_a_range_of_an_npy_file(tmp_path, rng):
    x = rng.normal(size=(20, 3))
    np.save(tmp_path / "x.npy", x)
    got = _json("mse", f"{tmp_path / 'x.npy'}?rows=3:9", f"{tmp_path / 'x.npy'}?rows=5:11",
                "--dtype", "float64")  # fmt: skip
    assert got["value"] == pytest.approx(np.mean((x[3:9] - x[5:11]) ** 2), rel=1e-12)
    assert got["inputs"]["predictions"]["shape"] == [6, 3]
    for bad in ("9:3", "a:b", "3"):
        out = run_cli("mse", f"{tmp_path / 'x.npy'}?rows={bad}", tmp_path / "x.npy")
        assert_usage_error(out, "START:STOP")
    (tmp_path / "x.csv").write_text("1\n2\n")
    assert_usage_error(run_cli("mse", f"{tmp_path / 'x.csv'}?rows=0:1", tmp_path / "x.csv"),
                       "rows= reads an NPY file")  # fmt: skip


def test_top_rows_on_dask_are_counted_as_one_process_counts_them(tmp_path, rng, monkeypatch):
    """Ranges of an NPY file, row groups of a Parquet file and shards: the top rows carry
    the row numbers of one process, which counts over every part."""
    from losscli import cluster

    monkeypatch.setattr(cluster, "TASK_ROWS", 40)
    x, y = rng.normal(size=(130, 4)), rng.integers(0, 4, 130)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    a, b = rng.normal(size=300), rng.normal(size=300)
    pq.write_table(pa.table({"a": a, "b": b}), tmp_path / "t.parquet", row_group_size=70)
    _shards(tmp_path, [40, 7, 101, 23], rng)
    runs = [
        ["ce", tmp_path / "x.npy", tmp_path / "y.npy"],
        ["mse", tmp_path / "t.parquet", "--pred-cols", "a", "--target-cols", "b"],
        ["ce", tmp_path / "p", tmp_path / "y"],
    ]
    for args in runs:
        one = _json(*args, "--top", "5", "--dtype", "float64")["top"]
        many = _json(*args, "--top", "5", "--dtype", "float64", "--dask", "local")["top"]
        assert [r["row"] for r in many] == [r["row"] for r in one], args
        assert [r["loss"] for r in many] == pytest.approx([r["loss"] for r in one], rel=1e-12)


def test_a_failed_run_leaves_the_gradient_folder_as_it_was(tmp_path, rng):
    """One shard holds an inf: exit 2, and neither the other parts nor temporaries reach the
    folder, which keeps a former run's files as they were."""
    _shards(tmp_path, [30, 40, 50], rng)
    grads = tmp_path / "grads"
    args = ["ce", tmp_path / "p", tmp_path / "y", "--dask", "local", "--grad-out", f"{grads}/"]
    assert run_cli(*args, "-f", "value").exit_code == 0
    before = {p.name: p.read_bytes() for p in grads.iterdir()}
    assert sorted(before) == ["part-00.npy", "part-01.npy", "part-02.npy"]
    bad = np.load(tmp_path / "p" / "part-02.npy")
    bad[3, 1] = np.inf
    np.save(tmp_path / "p" / "part-02.npy", bad)
    for shard in ("part-00.npy", "part-01.npy"):  # other rows, so other gradients
        np.save(tmp_path / "p" / shard, np.load(tmp_path / "p" / shard) * 2)
    failed = run_cli(*args, "-f", "value")
    assert failed.exit_code == 2, failed.stderr
    assert {p.name: p.read_bytes() for p in grads.iterdir()} == before
    fresh = tmp_path / "fresh"
    assert run_cli(*args[:-1], f"{fresh}/", "-f", "value").exit_code == 2
    assert not fresh.exists() or list(fresh.iterdir()) == []


@pytest.mark.parametrize("where", ["a-file/sub/", "/proc/losscli-none/"])
def test_a_gradient_folder_that_cannot_be_made_is_exit_2(tmp_path, rng, where):
    _shards(tmp_path, [10, 10], rng)
    (tmp_path / "a-file").write_text("x")
    target = where if where.startswith("/") else f"{tmp_path / where}"
    out = run_cli("ce", tmp_path / "p", tmp_path / "y", "--dask", "local", "--grad-out", target)
    assert_usage_error(out, "--grad-out")
