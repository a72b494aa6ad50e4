"""The same command on the same bytes prints the same digits: whatever the block size, the
reader's chunking or the thread count (losscli.sums); and the gradient summary's min and max
are the values the gradient file holds."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from losscli.sums import CHUNK, OrderedSum
from tests.conftest import run_cli, run_process

finite = st.floats(
    allow_nan=False, allow_infinity=False, width=64, min_value=-1e300, max_value=1e300
)


def _split_sum(values: np.ndarray, cuts: list[int]) -> float:
    total = OrderedSum()
    start = 0
    for cut in sorted(set(c % (len(values) + 1) for c in cuts)) + [len(values)]:
        total.add(values[start:cut])
        start = max(start, cut)
    return total.value


@settings(max_examples=150, deadline=None)
@given(
    st.lists(finite, min_size=0, max_size=3 * CHUNK // 100).map(
        lambda v: np.repeat(np.array(v, dtype=np.float64), 100)
    ),
    st.lists(st.integers(min_value=0, max_value=10**6), max_size=12),
)
def test_ordered_sum_is_the_same_bits_for_any_blocks(values, cuts):
    whole = OrderedSum()
    whole.add(values)
    assert _split_sum(values, cuts).hex() == whole.value.hex()


@settings(max_examples=100, deadline=None)
@given(st.lists(finite, min_size=1, max_size=3 * CHUNK + 5))
def test_ordered_sum_is_close_to_the_exact_sum(values):
    array = np.array(values)
    total = OrderedSum()
    total.add(array)
    exact = math.fsum(values)
    # Each chunk is a pairwise sum: its error is at most about log2(CHUNK) * eps * sum |x|.
    bound = 16 * np.finfo(np.float64).eps * math.fsum(abs(v) for v in values)
    assert abs(total.value - exact) <= bound + 1e-300


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1e308, 1e308], math.inf),
        ([-1e308, -1e308, 1.0], -math.inf),
        ([math.inf, 1.0], math.inf),
        ([math.inf, -math.inf], math.nan),
        ([1.0, math.nan], math.nan),
        ([], 0.0),
        ([5e-324, 5e-324], 1e-323),
    ],
)
def test_ordered_sum_edges(values, expected):
    total = OrderedSum()
    total.add(np.array(values, dtype=np.float64))
    if math.isnan(expected):
        assert math.isnan(total.value)
    else:
        assert total.value == expected


@pytest.fixture(scope="module")
def classification(tmp_path_factory):
    root = tmp_path_factory.mktemp("determinism")
    rng = np.random.default_rng(7)
    rows = 3 * CHUNK + 123
    logits = (rng.standard_normal((rows, 6)) * 3).astype(np.float32)
    labels = rng.integers(0, 6, rows)
    labels[::11] = -100
    np.save(root / "logits.npy", logits)
    np.save(root / "labels.npy", labels)
    np.save(root / "probs.npy", (1 / (1 + np.exp(-logits))).astype(np.float32))
    np.save(root / "bits.npy", (rng.random((rows, 6)) < 0.5).astype(np.float32))
    np.savetxt(root / "logits.csv", logits, delimiter=",", fmt="%.9g")
    np.savetxt(root / "labels.csv", labels, fmt="%d")
    np.save(root / "weight.npy", np.array([0.1, 0.7, 1.3, 0.3, 2.9, 0.01]))
    return root


CASES = [
    ("ce", "logits.npy", "labels.npy", ()),
    ("ce", "logits.csv", "labels.csv", ()),
    ("ce", "logits.npy", "labels.npy", ("--weight", "{root}/weight.npy")),
    ("ce", "logits.npy", "labels.npy", ("--label-smoothing", "0.1", "-r", "sum")),
    ("bce-logits", "logits.npy", "bits.npy", ()),
    ("bce", "probs.npy", "bits.npy", ("--dtype", "float64")),
    ("mse", "logits.npy", "probs.npy", ()),
]


@pytest.mark.parametrize(("loss", "preds", "targets", "options"), CASES)
def test_value_is_the_same_bits_for_any_block_rows(classification, loss, preds, targets, options):
    root = classification
    options = [o.format(root=root) for o in options]
    values = set()
    for block_rows in (None, 1000, 4097, 777, 100000):
        extra = [] if block_rows is None else ["--block-rows", str(block_rows)]
        outcome = run_cli(loss, root / preds, root / targets, *options, *extra, "-f", "value")
        assert outcome.exit_code == 0, outcome.stderr
        values.add(outcome.stdout.strip())
    assert len(values) == 1, values


def test_value_is_the_same_bits_for_any_thread_count(classification):
    root = classification
    printed = set()
    for threads in ("1", "2"):
        env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        done = run_process(
            "ce", root / "logits.csv", root / "labels.csv", "-f", "value", "--block-rows", "5000",
            env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        printed.add(done.stdout.strip())
    assert len(printed) == 1, printed


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
@pytest.mark.parametrize("block_rows", [None, 1000])
@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_gradient_summary_min_max_are_the_files(
    classification, tmp_path, dtype, block_rows, suffix
):
    """With ignored targets, the factor the first block foretells is not the final one, so
    the file is scaled twice: the summary follows it all the same."""
    root = classification
    out = tmp_path / f"grad{suffix}"
    extra = [] if block_rows is None else ["--block-rows", str(block_rows)]
    outcome = run_cli(
        "ce", root / "logits.npy", root / "labels.npy", "--dtype", dtype,
        "--grad-out", out, "-f", "json", *extra,
    )  # fmt: skip
    assert outcome.exit_code == 0, outcome.stderr
    summary = json.loads(outcome.stdout)["gradient"]["predictions"]
    stored = np.float64 if dtype == "float64" else np.float32
    written = np.load(out) if suffix == ".npy" else np.loadtxt(out, delimiter=",", dtype=stored)
    assert written.dtype == stored
    assert summary["min"] == float(written.min())
    assert summary["max"] == float(written.max())
    assert math.isclose(
        summary["norm"], float(np.linalg.norm(written.astype(np.float64))), rel_tol=1e-6
    )


def test_merged_gradient_min_max_are_a_runs(classification, tmp_path):
    root = classification
    whole = run_cli("ce", root / "logits.npy", root / "labels.npy", "-f", "json")
    state = tmp_path / "state.json"
    run_cli("ce", root / "logits.npy", root / "labels.npy", "--emit-state", state, "-f", "value")
    merged = run_cli("merge", state, "-f", "json")
    assert merged.exit_code == 0, merged.stderr
    a = json.loads(whole.stdout)["gradient"]["predictions"]
    b = json.loads(merged.stdout)["gradient"]["predictions"]
    assert (a["min"], a["max"]) == (b["min"], b["max"])
