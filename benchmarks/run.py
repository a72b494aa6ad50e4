"""Speed and memory of losscli against the scripts a user would otherwise write.

Each case runs losscli and its baseline as separate processes, alternating, several times, and
reports the ratio of median wall times (and of peak RSS where it matters). Nothing is a bare
time: every figure is relative to a baseline measured in the same run.

    python benchmarks/run.py            # every case
    python benchmarks/run.py help small # chosen cases (help small csv quoted npy batch
                                        # views report compare stream-npy stream-csv dask)
    python benchmarks/run.py grad-ce grad-bce-logits floors   # the big-file cases, the floor

The quoted case reads a 200,000 x 10 CSV whose every cell is quoted (csv.QUOTE_ALL, 6
decimals: "0.123456") and a label file quoted the same way ("3"), as a spreadsheet or
csv.writer export writes them.

The two stream cases write about 3 GB of data under benchmarks/data (once) and take a few
minutes: a 50,000,000 x 10 float32 NPY (2 GB) and a 10,000,000 x 10 CSV (about 1 GB). The
two grad cases (named only) write 20,000,000 x 10 float32 logits, labels and targets (1.8 GB)
and report each run against the floor of the machine (benchmarks/floors.py): the bytes read
and written at its memory copy rate, the exps at one core's exp rate, and torch's import.
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import floors
import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
BASE = HERE / "baselines"
PY = sys.executable
LOSSCLI = [PY, "-m", "losscli"]


@dataclass
class Run:
    seconds: float
    max_rss_mb: float


def run_once(argv: list[str]) -> Run:
    """Wall time and peak RSS of one child process (which must succeed)."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    stderr = process.stderr.read().decode()
    process.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{stderr}")
    return Run(elapsed, usage.ru_maxrss / 1024)


def read_through(paths: list[str]) -> None:
    """Read files once, so that both commands find them in the page cache."""
    for path in paths:
        with open(path, "rb") as handle:
            while handle.read(1 << 24):
                pass


def compare(
    name: str, ours: list[str], baseline: list[str], repeats: int, warm: bool = True
) -> dict:
    """Alternate the two commands; medians of time, max of peak RSS. Without ``warm`` (runs
    too long to make twice), the data files named in the commands are read through first."""
    if warm:
        run_once(ours), run_once(baseline)  # warm the page cache and the import caches
    else:
        read_through([a for a in ours if os.path.isfile(a) and a.startswith(str(DATA))])
    a, b = [], []
    for _ in range(repeats):
        a.append(run_once(ours))
        b.append(run_once(baseline))
    med_a = statistics.median(r.seconds for r in a)
    med_b = statistics.median(r.seconds for r in b)
    rss_a = max(r.max_rss_mb for r in a)
    rss_b = max(r.max_rss_mb for r in b)
    return {
        "case": name,
        "losscli_s": med_a,
        "baseline_s": med_b,
        "ratio": med_a / med_b,
        "losscli_rss_mb": rss_a,
        "baseline_rss_mb": rss_b,
        "rss_ratio": rss_a / rss_b,
    }


def write_csv(path: Path, array: np.ndarray, fmt: str) -> None:
    if not path.exists():
        np.savetxt(path, array, delimiter=",", fmt=fmt)


def write_quoted_csv(path: Path, array: np.ndarray, fmt: str) -> None:
    """Every cell in quotes (csv.QUOTE_ALL), as csv.writer and spreadsheets write them."""
    if not path.exists():
        with open(path, "w", newline="") as out:
            writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
            rows = array.reshape(len(array), -1)
            writer.writerows([fmt % v for v in row] for row in rows.tolist())


def make_data() -> None:
    DATA.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    small = rng.normal(size=(64, 5)).astype(np.float32)
    write_csv(DATA / "small_logits.csv", small, "%.6f")
    write_csv(DATA / "small_labels.csv", rng.integers(0, 5, 64), "%d")
    big_path = DATA / "big_logits.npy"
    if not big_path.exists():
        big = rng.normal(size=(1_000_000, 10)).astype(np.float32)
        np.save(big_path, big)
        np.save(DATA / "big_labels.npy", rng.integers(0, 10, 1_000_000))
    second = DATA / "big_logits_b.npy"
    if not second.exists():  # a second model, for compare
        np.save(second, rng.normal(size=(1_000_000, 10)).astype(np.float32))
    quoted = np.random.default_rng(3)
    write_quoted_csv(DATA / "quoted_logits.csv", quoted.normal(size=(200_000, 10)), "%.6f")
    write_quoted_csv(DATA / "quoted_labels.csv", quoted.integers(0, 10, 200_000), "%d")
    big = np.load(big_path)
    write_csv(DATA / "big_logits.csv", big, "%.6f")
    write_csv(DATA / "big_labels.csv", np.load(DATA / "big_labels.npy"), "%d")


def make_stream_data(selected: set[str]) -> None:
    """The large inputs of the streaming cases, written in pieces (never whole in memory)."""
    rng = np.random.default_rng(1)
    if "stream-npy" in selected and not (DATA / "huge_labels.npy").exists():
        rows = 50_000_000
        logits = np.lib.format.open_memmap(
            DATA / "huge_logits.npy", mode="w+", dtype=np.float32, shape=(rows, 10)
        )
        for start in range(0, rows, 2_000_000):
            logits[start : start + 2_000_000] = rng.standard_normal((2_000_000, 10), np.float32)
        logits.flush()
        del logits
        np.save(DATA / "huge_labels.npy", rng.integers(0, 10, rows))
    if selected & {"grad-ce", "grad-bce-logits"} and not (DATA / "grad_targets.npy").exists():
        rows = 20_000_000
        for name, draw in (
            ("grad_logits.npy", lambda n: rng.standard_normal((n, 10), np.float32)),
            ("grad_targets.npy", lambda n: rng.random((n, 10), np.float32)),
        ):
            array = np.lib.format.open_memmap(
                DATA / name, mode="w+", dtype=np.float32, shape=(rows, 10)
            )
            for start in range(0, rows, 2_000_000):
                array[start : start + 2_000_000] = draw(2_000_000)
            array.flush()
            del array
        np.save(DATA / "grad_labels.npy", rng.integers(0, 10, rows))
    if "stream-csv" in selected and not (DATA / "huge_labels.csv").exists():
        import pyarrow as pa
        import pyarrow.csv as pacsv

        rows, step = 10_000_000, 1_000_000
        options = pacsv.WriteOptions(include_header=False)
        with open(DATA / "huge_logits.csv", "wb") as out:
            writer = None
            for _ in range(0, rows, step):
                block = np.round(rng.standard_normal((step, 10)).astype(np.float32), 6)
                table = pa.table({f"c{j}": block[:, j] for j in range(10)})
                writer = writer or pacsv.CSVWriter(out, table.schema, write_options=options)
                writer.write_table(table)
            writer.close()
        np.savetxt(DATA / "huge_labels.csv", rng.integers(0, 10, rows), fmt="%d")


def make_dask_data() -> None:
    """8 Parquet shards, 10,000,000 x 10 float32 logits and an int64 label column in all."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = DATA / "shards"
    if (folder / "part-7.parquet").exists():
        return
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(2)
    for i in range(8):
        rows = 1_250_000
        logits = rng.standard_normal((rows, 10), np.float32)
        columns = {f"c{j}": logits[:, j] for j in range(10)}
        columns["y"] = rng.integers(0, 10, rows)
        pq.write_table(pa.table(columns), folder / f"part-{i}.parquet", row_group_size=250_000)


class DaskCluster:
    """A scheduler and two single-threaded worker processes on 127.0.0.1."""

    def __enter__(self):
        bin_dir = os.path.dirname(PY)
        env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
        state = DATA / "scheduler.json"
        state.unlink(missing_ok=True)
        common = ["--no-dashboard", "--host", "127.0.0.1"]
        self.processes = [
            subprocess.Popen(
                [f"{bin_dir}/dask", "scheduler", *common, "--scheduler-file", str(state)],
                env=env,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
        ]
        while not state.exists():
            time.sleep(0.2)
        self.address = json.loads(state.read_text())["address"]
        self.processes.append(
            subprocess.Popen(
                [
                    f"{bin_dir}/dask",
                    "worker",
                    self.address,
                    *common,
                    "--nworkers",
                    "2",
                    "--nthreads",
                    "1",
                ],
                env=env,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
        )
        from distributed import Client

        with Client(self.address) as client:
            client.wait_for_workers(2, timeout=120)
        return self

    def __exit__(self, *exc):
        for process in reversed(self.processes):
            process.terminate()
            process.wait(timeout=30)


def rss_limit(name: str, result: dict, megabytes: float) -> tuple[str, float, dict]:
    """A case whose target is an absolute peak RSS: the ratio is to the limit."""
    row = {**result, "case": name, "ratio": result["losscli_rss_mb"] / megabytes}
    return (f"peak RSS <= {megabytes:.0f} MB", 1.0, row)


SAMPLE = HERE.parent / "sample_data"
SAMPLE_JOBS = [
    ("ce", ["logits.csv", "labels.csv"], {}),
    ("nll", ["log_probs.csv", "labels.csv"], {}),
    ("mse", ["y_pred.csv", "y_true.csv"], {}),
    ("l1", ["y_pred.csv", "y_true.csv"], {}),
    ("bce", ["bce_probs.csv", "bce_targets.csv"], {}),
    ("huber", ["y_pred.csv", "y_true.csv"], {"delta": 0.5}),
    ("kl-div", ["log_probs.csv", "target_probs.csv"], {"reduction": "batchmean"}),
    ("bce-logits", ["bce_logits.csv", "bce_targets.csv"], {"pos_weight": "1,2,2,1"}),
    ("multi-margin", ["logits.csv", "labels.csv"], {}),
    ("triplet-margin", ["emb1.csv", "emb2.csv", "emb3.csv"], {}),
]


def write_jobs(path: Path, count: int) -> None:
    """``count`` jobs cycling through the sample_data examples."""
    with open(path, "w") as out:
        for n in range(count):
            loss, inputs, options = SAMPLE_JOBS[n % len(SAMPLE_JOBS)]
            job = {"loss": loss, "inputs": [str(SAMPLE / i) for i in inputs], "options": options}
            out.write(json.dumps({**job, "id": n}) + "\n")


def ce_commands(logits: str, labels: str, script: str) -> tuple[list[str], list[str]]:
    """``losscli ce`` on two data files, and a baseline script on the same files."""
    files = [str(DATA / logits), str(DATA / labels)]
    return [*LOSSCLI, "ce", *files, "-f", "value"], [PY, str(BASE / script), *files]


def cases(selected: set[str]) -> list[tuple[str, float, dict]]:
    """(target description, limit, result) for each chosen case."""
    out = []
    if not selected or "help" in selected:
        ours, base = [*LOSSCLI, "--help"], [PY, str(BASE / "typer_app.py"), "--help"]
        r = compare("--help vs bare 20-command Typer app", ours, base, 15)
        out.append(("time <= 1.2x", 1.2, r))
    if not selected or "small" in selected:
        ours, base = ce_commands("small_logits.csv", "small_labels.csv", "ce_loadtxt.py")
        r = compare("64x5 CSV ce vs import numpy, torch", ours, IMPORTS, 9)
        out.append(("time <= 1.12x", 1.12, r))
        table = [a for a in ours if a not in ("-f", "value")]
        r = compare("64x5 CSV ce table vs np.loadtxt script", table, base, 9)
        out.append(("time <= 1.05x", 1.05, r))
    if not selected or "csv" in selected:
        ours, loadtxt = ce_commands("big_logits.csv", "big_labels.csv", "ce_loadtxt.py")
        _, pandas = ce_commands("big_logits.csv", "big_labels.csv", "ce_pandas.py")
        r = compare("1Mx10 CSV ce vs np.loadtxt script", ours, loadtxt, 3)
        # The floor of a run this short: torch's import, which every torch script pays.
        r["floor_s"] = machine()["import_s"]
        out.append(("time <= 0.6x", 0.6, r))
        r = compare("1Mx10 CSV ce vs pandas script", ours, pandas, 5)
        out.append(("time <= 0.9x", 0.9, r))
        rss = {**r, "case": "1Mx10 CSV peak RSS vs pandas", "ratio": r["rss_ratio"]}
        out.append(("peak RSS <= 1.0x", 1.0, rss))
    if not selected or "quoted" in selected:
        ours, base = ce_commands("quoted_logits.csv", "quoted_labels.csv", "ce_pyarrow.py")
        r = compare("200kx10 quoted CSV ce vs pyarrow.csv script", ours, base, 7)
        out.append(("time <= 1.5x", 1.5, r))
    if not selected or "batch" in selected:
        jobs = DATA / "jobs.ndjson"
        write_jobs(jobs, 50)
        ours = [*LOSSCLI, "batch", str(jobs)]
        base = [PY, str(BASE / "separate_calls.py"), str(jobs)]
        r = compare("50 sample jobs: batch vs 50 separate calls", ours, base, 1)
        out.append(("time <= 0.1x", 0.1, r))
    if not selected or "npy" in selected:
        ours, base = ce_commands("big_logits.npy", "big_labels.npy", "ce_npload.py")
        r = compare("1Mx10 NPY ce vs np.load script", ours, base, 7)
        r["floor_s"] = machine()["import_s"]
        out.append(("time <= 1.0x", 1.0, r))
    for loss, targets, script, limit in (
        ("ce", "grad_labels.npy", "ce_npload_gradout.py", 0.5),
        ("bce-logits", "grad_targets.npy", "bce_logits_npload_gradout.py", 0.6),
    ):
        if f"grad-{loss}" not in selected:  # not in the default set: 2.6 GB of data
            continue
        files = [str(DATA / "grad_logits.npy"), str(DATA / targets)]
        grad, base_grad = str(DATA / "grad_losscli.npy"), str(DATA / "grad_baseline.npy")
        ours = [*LOSSCLI, loss, *files, "--grad-out", grad, "-f", "value"]
        base = [PY, str(BASE / script), *files, base_grad]
        r = compare(f"20Mx10 NPY {loss} --grad-out vs whole-array torch", ours, base, 3)
        sizes = sum(os.path.getsize(f) for f in files)
        exps = {"ce": 1, "bce-logits": 2}[loss] * 200_000_000  # exp (and log1p) per element
        r["floor_s"] = floors.floor_seconds(machine(), sizes, 800_000_128, exps)
        out.append((f"time <= {limit}x", limit, r))
        if loss == "ce":
            out.append(rss_limit("20Mx10 NPY ce --grad-out peak RSS", r, 700))
    if not selected or "views" in selected:
        files = [str(DATA / "big_logits.npy"), str(DATA / "big_labels.npy")]
        ours = [*LOSSCLI, "ce", *files, "--hist", "--top", "10", "--by-class", "-f", "json"]
        base = [PY, str(BASE / "ce_views.py"), *files]
        r = compare("1Mx10 NPY ce --hist --top --by-class vs NumPy", ours, base, 5)
        out.append(("time <= 1.2x", 1.2, r))
    if not selected or "report" in selected:
        files = [str(DATA / "big_logits.npy"), str(DATA / "big_labels.npy")]
        views = ["--hist", "--top", "10", "--by-class", "--calibration", "15", "-f", "json"]
        base = [*LOSSCLI, "ce", *files, *views]
        page = Path(tempfile.gettempdir()) / "losscli-benchmark-report.html"
        r = compare("1Mx10 NPY ce with views: --report vs none", [*base, "--report", str(page)],
                    base, 5)  # fmt: skip
        r["report_kb"] = page.stat().st_size / 1024
        out.append(("time <= 1.10x", 1.10, r))
    if not selected or "compare" in selected:
        files = [str(DATA / n) for n in ("big_logits.npy", "big_logits_b.npy", "big_labels.npy")]
        ours = [*LOSSCLI, "compare", "ce", *files, "-f", "value"]
        base = [PY, str(BASE / "ce_compare.py"), *files]
        r = compare("1Mx10 NPY compare ce vs torch + NumPy", ours, base, 5)
        out.append(("time <= 1.2x", 1.2, r))
    if not selected or "stream-npy" in selected:
        files = [str(DATA / "huge_logits.npy"), str(DATA / "huge_labels.npy")]
        grad, base_grad = str(DATA / "grad_losscli.npy"), str(DATA / "grad_baseline.npy")
        ours = [*LOSSCLI, "ce", *files, "--grad-out", grad, "-f", "value"]
        base = [PY, str(BASE / "ce_npload_gradout.py"), *files, base_grad]
        r = compare("50Mx10 NPY (2 GB) ce --grad-out vs whole-array torch", ours, base, 1, False)
        out.append(("time <= 0.8x", 0.8, r))
        out.append(rss_limit("50Mx10 NPY (2 GB) ce --grad-out peak RSS", r, 700))
    if not selected or "stream-csv" in selected:
        ours, base = ce_commands("huge_logits.csv", "huge_labels.csv", "ce_pandas.py")
        r = compare("10Mx10 CSV (1 GB) ce with gradient vs pandas", ours, base, 3, False)
        out.append(("time <= 0.9x", 0.9, r))
        out.append(rss_limit("10Mx10 CSV (1 GB) ce with gradient peak RSS", r, 700))
    if not selected or "dask" in selected:
        make_dask_data()
        table = [str(DATA / "shards"), "--pred-cols", "0:10", "--target-cols", "y"]
        single = [*LOSSCLI, "ce", *table, "-f", "value"]
        with DaskCluster() as cluster:
            on_dask = [*single, "--dask", cluster.address]
            a, b = run_value(on_dask), run_value(single)
            if abs(a - b) > 1e-12 * abs(b):
                raise SystemExit(f"--dask gave {a!r}, one process {b!r}")
            r = compare("8 Parquet shards 10Mx10: 2 Dask workers vs one process", on_dask,
                        single, 3)  # fmt: skip
        out.append(("time <= 1.5x", 1.5, r))
    return out


IMPORTS = [PY, "-c", "import numpy, torch"]
_MACHINE: dict = {}


def machine() -> dict:
    """This machine's copy and exp rates, torch's import time and the kernels' rates,
    measured once per run (benchmarks/floors.py)."""
    if not _MACHINE:  # in a child: a child's peak RSS starts from its parent's at the fork
        found = subprocess.run([PY, str(Path(floors.__file__)), "--json"], capture_output=True,
                               check=True, text=True)  # fmt: skip
        _MACHINE.update(json.loads(found.stdout))
    return _MACHINE


def run_value(argv: list[str]) -> float:
    return float(subprocess.run(argv, capture_output=True, check=True, text=True).stdout)


def main() -> int:
    selected = set(sys.argv[1:])
    if "--make-data" in selected:
        make_data()
        make_stream_data(selected - {"--make-data"})
        return 0
    # Data is made in a process of its own: a child forked from a process that held gigabytes
    # would report that as its own peak RSS (Linux keeps the peak across exec).
    wanted = selected or {"stream-npy", "stream-csv"}
    subprocess.run([PY, __file__, "--make-data", *sorted(wanted)], check=True)
    results = cases(selected)
    print(
        f"{'case':50} {'target':18} {'ratio':>6} {'losscli':>10} {'baseline':>10} "
        f"{'RSS MB':>15}  verdict  {'x floor':>8}"
    )
    failed = 0
    for target, limit, r in results:
        ok = r["ratio"] <= limit
        failed += not ok
        floor = f"{r['losscli_s'] / r['floor_s']:7.2f}x" if "floor_s" in r else ""
        print(
            f"{r['case']:50} {target:18} {r['ratio']:6.2f} {r['losscli_s']:9.3f}s "
            f"{r['baseline_s']:9.3f}s {r['losscli_rss_mb']:7.0f}/{r['baseline_rss_mb']:<7.0f} "
            f" {'ok    ' if ok else 'MISSED'}  {floor}"
        )
        if "report_kb" in r:
            print(f"{'':50} report file: {r['report_kb']:.0f} KB")
    if _MACHINE or "floors" in selected:
        found = machine()
        print(
            f"\nthis machine: memory copy {found['copy_bytes_s'] / 1e9:.2f} GB/s, exp (one core) "
            f"{found['exp_s'] / 1e6:.0f} M/s, import numpy+torch {found['import_s']:.2f} s"
        )
        for result in results:
            r = result[2]
            if "floor_s" in r:
                print(f"floor of {r['case']}: {r['floor_s']:.2f} s "
                      f"({r['floor_s'] / r['baseline_s']:.2f}x the baseline)")  # fmt: skip
        print("kernels (2M x 10 float32, loss and gradient, elements/s):")
        for name, fused, autograd in found["kernels"]:
            print(f"  {name:12} fused {fused / 1e6:7.1f} M/s   autograd {autograd / 1e6:7.1f} M/s"
                  f"   {fused / autograd:5.2f}x")  # fmt: skip
        if found["cuda_ce"]:
            fused, autograd = found["cuda_ce"]
            print(f"  ce on CUDA (1e8 elements): fused {fused / 1e9:.2f} G/s, autograd "
                  f"{autograd / 1e9:.2f} G/s, {fused / autograd:.2f}x")  # fmt: skip
        else:
            print("  ce on CUDA: no GPU here")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
