"""Views beyond the number: standard error and 95% interval, perplexity, per-class rows,
checked against SciPy and NumPy, by blocks and merged."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from tests.conftest import assert_usage_error, run_cli


def _json(*args) -> dict:
    out = run_cli(*args, "-f", "json")
    assert out.exit_code == 0, out.stderr
    return json.loads(out.stdout)


def _ce_rows(x, y):
    logp = x - np.log(np.exp(x).sum(1, keepdims=True))
    return -logp[np.arange(len(y)), y]


@pytest.fixture
def ce_files(tmp_path, classes):
    x, y = classes
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    return tmp_path / "x.npy", tmp_path / "y.npy", x, y


def test_standard_error_and_interval_match_scipy_whole_by_blocks_and_merged(ce_files, tmp_path):
    xp, yp, x, y = ce_files
    losses = _ce_rows(x, y)
    sem = stats.sem(losses)
    for extra in ([], ["--block-rows", "5"]):
        got = _json("ce", xp, yp, "--dtype", "float64", *extra)
        assert got["stderr"] == pytest.approx(sem, rel=1e-9)
        low, high = stats.norm.interval(0.95, loc=losses.mean(), scale=sem)
        assert got["ci95"] == pytest.approx([low, high], rel=1e-9)
        assert got["perplexity"] == pytest.approx(math.exp(losses.mean()), rel=1e-9)
        assert got["bits"] == pytest.approx(losses.mean() / math.log(2), rel=1e-9)
    half = len(y) // 2
    for name, rows in (("a", slice(None, half)), ("b", slice(half, None))):
        np.save(tmp_path / f"x{name}.npy", x[rows])
        np.save(tmp_path / f"y{name}.npy", y[rows])
        run_cli("ce", tmp_path / f"x{name}.npy", tmp_path / f"y{name}.npy", "--dtype", "float64",
                "--emit-state", tmp_path / f"{name}.json")  # fmt: skip
    merged = _json("merge", tmp_path / "a.json", tmp_path / "b.json")
    assert merged["stderr"] == pytest.approx(sem, rel=1e-9)


def test_the_standard_error_of_an_element_mean_and_where_it_does_not_apply(tmp_path, rng):
    a, b = rng.normal(size=(30, 3)), rng.normal(size=(30, 3))
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    got = _json("mse", tmp_path / "a.npy", tmp_path / "b.npy", "--dtype", "float64")
    assert got["stderr"] == pytest.approx(stats.sem(((a - b) ** 2).ravel()), rel=1e-9)
    assert "perplexity" not in got
    summed = _json("mse", tmp_path / "a.npy", tmp_path / "b.npy", "-r", "sum")
    assert summed["stderr"] is None and "not one" in summed["stderr_note"]
    np.save(tmp_path / "p.npy", rng.uniform(0.1, 0.9, size=(30, 3)))
    np.save(tmp_path / "t.npy", rng.integers(0, 2, size=(30, 3)).astype(float))
    weighted = _json("bce", tmp_path / "p.npy", tmp_path / "t.npy", "--weight", "1,2,3")
    assert weighted["stderr"] is None and "weighted mean" in weighted["stderr_note"]
    table = run_cli("bce", tmp_path / "p.npy", tmp_path / "t.npy", "--weight", "1,2,3")
    assert "not given: a weighted mean" in table.stdout


def test_by_class_matches_numpy_with_names_and_ignored_targets(tmp_path, classes):
    x, y = classes
    y = y.copy()
    y[::4] = -100
    header = ",".join(f"k{i}" for i in range(x.shape[1]))
    (tmp_path / "x.csv").write_text(
        header + "\n" + "\n".join(",".join(f"{v:.17g}" for v in row) for row in x) + "\n"
    )
    (tmp_path / "y.csv").write_text("\n".join(map(str, y)) + "\n")
    for extra in ([], ["--block-rows", "3"]):
        got = _json("ce", tmp_path / "x.csv", tmp_path / "y.csv", "--by-class", "--dtype",
                    "float64", *extra)  # fmt: skip
        kept = y != -100
        losses = _ce_rows(x[kept], y[kept])
        total = losses.sum()
        for k, row in enumerate(got["by_class"]):
            mine = losses[y[kept] == k]
            assert row["class"] == f"k{k}"
            assert row["count"] == len(mine)
            assert row["share"] == pytest.approx(mine.sum() / total, rel=1e-9)
            if len(mine):
                assert row["mean"] == pytest.approx(mine.mean(), rel=1e-9)
    table = run_cli("ce", tmp_path / "x.csv", tmp_path / "y.csv", "--by-class")
    assert "by class" in table.stdout and "k0" in table.stdout
    np.save(tmp_path / "a.npy", x)
    out = run_cli("mse", tmp_path / "a.npy", tmp_path / "a.npy", "--by-class")
    assert_usage_error(out, "--by-class needs class-index targets")
