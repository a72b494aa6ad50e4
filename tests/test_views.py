"""Views beyond the number: standard error and 95% interval, perplexity, per-class rows,
checked against SciPy and NumPy, by blocks and merged."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from tests.conftest import assert_usage_error, run_cli, run_process


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


# ------------------------------------------------------------------ --hist and --top


def _check_hist(hist: dict, losses: np.ndarray) -> None:
    """A histogram against NumPy: quantiles within the sketch's 1% of the values of that
    rank, the exact max, bins that hold every row, counts as np.histogram's on its edges."""
    from losscli.views.hist import SKETCH_ALPHA

    losses = np.sort(losses)
    for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        exact = np.quantile(losses, q, method="lower")
        assert abs(hist["quantiles"][name] - exact) <= SKETCH_ALPHA * abs(exact) + 1e-12, name
    assert hist["quantiles"]["max"] == pytest.approx(losses.max(), rel=1e-12)
    assert sum(hist["counts"]) == hist["count"] == len(losses)
    edges = np.asarray(hist["edges"])
    assert np.all(np.diff(edges) >= 0) and len(edges) == len(hist["counts"]) + 1
    assert edges[0] == pytest.approx(losses.min()) and edges[-1] == pytest.approx(losses.max())
    expected, _ = np.histogram(losses, bins=edges)
    # Values that fall on a bucket edge may be counted in the bin beside it.
    assert np.abs(expected - np.asarray(hist["counts"])).sum() <= 2


def test_hist_quantiles_and_bins_match_numpy_whole_by_blocks_and_merged(ce_files, tmp_path):
    xp, yp, x, y = ce_files
    losses = _ce_rows(x, y)
    for extra in ([], ["--block-rows", "7"]):
        got = _json("ce", xp, yp, "--dtype", "float64", "--hist", *extra)
        _check_hist(got["hist"], losses)
    half = len(y) // 3
    for name, rows in (("a", slice(None, half)), ("b", slice(half, None))):
        np.save(tmp_path / f"x{name}.npy", x[rows])
        np.save(tmp_path / f"y{name}.npy", y[rows])
        run_cli("ce", tmp_path / f"x{name}.npy", tmp_path / f"y{name}.npy", "--dtype", "float64",
                "--emit-state", tmp_path / f"{name}.json")  # fmt: skip
    merged = _json("merge", tmp_path / "a.json", tmp_path / "b.json", "--hist")
    _check_hist(merged["hist"], losses)


@pytest.mark.parametrize(
    "values",
    [
        np.linspace(-3, 5, 101),  # negative, zero and positive losses
        np.zeros(7),
        np.r_[np.zeros(5), np.geomspace(1e-6, 1e6, 40)],
        -np.geomspace(0.1, 10, 9),
    ],
)
def test_hist_of_any_sign_against_numpy(values):
    from losscli.views.hist import Sketch

    sketch = Sketch()
    for part in np.array_split(values, 3):
        sketch.add(part)
    _check_hist(sketch.histogram(), values)


def test_hist_of_rows_of_several_elements_sums_each_row(tmp_path, rng):
    a, b = rng.normal(size=(40, 3)), rng.normal(size=(40, 3))
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    got = _json("mse", tmp_path / "a.npy", tmp_path / "b.npy", "--dtype", "float64", "--hist")
    _check_hist(got["hist"], ((a - b) ** 2).sum(1))


def test_top_rows_of_ce_against_numpy(ce_files):
    xp, yp, x, y = ce_files
    losses = _ce_rows(x, y)
    order = np.argsort(-losses, kind="stable")[:5]
    probs = np.exp(x) / np.exp(x).sum(1, keepdims=True)
    for extra in ([], ["--block-rows", "3"]):
        top = _json("ce", xp, yp, "--dtype", "float64", "--top", "5", *extra)["top"]
        assert [r["row"] for r in top] == order.tolist()
        for row, expected in zip(top, order):
            assert row["loss"] == pytest.approx(losses[expected], rel=1e-12)
            assert row["target"] == y[expected]
            assert row["predicted"] == int(np.argmax(x[expected]))
            assert row["p_target"] == pytest.approx(probs[expected, y[expected]], rel=1e-9)


def test_top_skips_ignored_rows_names_classes_and_merges(tmp_path, rng):
    x = rng.normal(size=(12, 3))
    y = rng.integers(0, 3, 12)
    y[[2, 5]] = -100
    names = ["cat", "dog", "eel"]
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    got = _json("ce", tmp_path / "x.npy", tmp_path / "y.npy", "--dtype", "float64", "--top", "20")
    rows = [r["row"] for r in got["top"]]
    assert sorted(rows) == [i for i in range(12) if i not in (2, 5)]
    losses = [r["loss"] for r in got["top"]]
    assert losses == sorted(losses, reverse=True)
    x3 = rng.normal(size=(6, 3))
    header = tmp_path / "named.csv"
    header.write_text("cat,dog,eel\n" + "\n".join(",".join(map(str, r)) for r in x3) + "\n")
    (tmp_path / "labels.csv").write_text("\n".join(names[i % 3] for i in range(6)) + "\n")
    got = _json("ce", header, tmp_path / "labels.csv", "--top", "2", "--classes", "cat,dog,eel")
    assert {r["target"] for r in got["top"]} <= set(names)


def test_top_of_merged_states_is_the_top_of_one_run(ce_files, tmp_path):
    xp, yp, x, y = ce_files
    losses = _ce_rows(x, y)
    cut = len(y) // 2
    for name, rows in (("a", slice(None, cut)), ("b", slice(cut, None))):
        np.save(tmp_path / f"x{name}.npy", x[rows])
        np.save(tmp_path / f"y{name}.npy", y[rows])
        run_cli("ce", tmp_path / f"x{name}.npy", tmp_path / f"y{name}.npy", "--dtype", "float64",
                "--top", "4", "--emit-state", tmp_path / f"{name}.json")  # fmt: skip
    top = _json("merge", tmp_path / "a.json", tmp_path / "b.json", "--top", "4")["top"]
    expected = np.sort(losses)[::-1][:4]
    assert [r["loss"] for r in top] == pytest.approx(expected.tolist(), rel=1e-12)
    for r in top:  # the row within its part, and the part's source
        part = 0 if r["source"].endswith("xa.npy") else cut
        assert losses[part + r["row"]] == pytest.approx(r["loss"], rel=1e-12)
    out = run_cli("merge", tmp_path / "a.json", tmp_path / "b.json", "--top", "30", "-f", "json")
    assert out.exit_code == 0 and "keep the top 10 rows" in out.stderr


def test_top_and_hist_refused_or_said_plainly(tmp_path, rng, ce_files):
    xp, yp, _, _ = ce_files
    refused = run_process("ce", xp, yp, "--top", "0")
    assert refused.returncode == 2 and b"--top" in refused.stderr
    assert len(refused.stderr.splitlines()) == 1
    out = run_cli("ce", xp, yp, "--hist", "--top", "2")
    assert out.exit_code == 0
    assert "p50" in out.stdout and "top 2 rows by loss" in out.stdout and "p[target]" in out.stdout


# ------------------------------------------------------------------ --group-by


@pytest.fixture
def grouped_table(tmp_path, rng):
    n = 120
    x = rng.normal(size=(n, 3))
    y = rng.integers(0, 3, n)
    split = rng.choice(["train", "val", "test, held out"], n)
    fold = np.arange(n) % 4
    lines = ["a,b,c,label,split,fold"]
    lines += [
        ",".join(f"{v:.17g}" for v in x[i]) + f',{y[i]},"{split[i]}",{fold[i]}' for i in range(n)
    ]
    path = tmp_path / "t.csv"
    path.write_text("\n".join(lines) + "\n")
    return path, x, y, split, fold


def _expected_groups(losses, keys) -> list[dict]:
    """Per key, in order (numbers by value): count, mean and share, with plain Python."""
    sums, counts = {}, {}
    for loss, key in zip(losses.tolist(), keys.tolist()):
        sums[key] = sums.get(key, 0.0) + loss
        counts[key] = counts.get(key, 0) + 1
    total = math.fsum(losses.tolist())
    return [
        {"group": str(k), "count": counts[k], "mean": sums[k] / counts[k], "share": sums[k] / total}
        for k in sorted(sums)
    ]


@pytest.mark.parametrize("column", ["split", "fold", "4"])
@pytest.mark.parametrize("extra", [[], ["--block-rows", "11"]])
def test_group_by_matches_pandas(grouped_table, column, extra):
    path, x, y, split, fold = grouped_table
    got = _json("ce", path, "--pred-cols", "a,b,c", "--target-cols", "label", "--group-by", column,
                "--dtype", "float64", *extra)  # fmt: skip
    keys = fold if column == "fold" else split
    expected = _expected_groups(_ce_rows(x, y), keys)
    assert [g["group"] for g in got["by_group"]] == [g["group"] for g in expected]
    for row, want in zip(got["by_group"], expected):
        assert row["count"] == want["count"]
        assert row["mean"] == pytest.approx(want["mean"], rel=1e-12)
        assert row["share"] == pytest.approx(want["share"], rel=1e-12)


def test_group_by_from_parquet_merged_and_in_the_table(tmp_path, rng):
    import pyarrow as pa
    import pyarrow.parquet as pq

    p, t = rng.random(60), rng.integers(0, 2, 60).astype(float)
    src = rng.choice(["x", "y", "z"], 60)
    losses = -(t * np.log(p) + (1 - t) * np.log(1 - p))
    for name, rows in (("a", slice(0, 25)), ("b", slice(25, None))):
        table = pa.table({"p": p[rows], "y": t[rows], "src": src[rows]})
        pq.write_table(table, tmp_path / f"{name}.parquet", row_group_size=7)
        run_cli("bce", tmp_path / f"{name}.parquet", "--pred-cols", "p", "--target-cols", "y",
                "--group-by", "src", "--dtype", "float64",
                "--emit-state", tmp_path / f"{name}.json")  # fmt: skip
    merged = _json("merge", tmp_path / "a.json", tmp_path / "b.json")
    expected = _expected_groups(losses, src)
    assert merged["group_by"] == "src"
    for row, want in zip(merged["by_group"], expected):
        assert row["count"] == want["count"]
        assert row["mean"] == pytest.approx(want["mean"], rel=1e-12)
    table = run_cli("bce", tmp_path / "a.parquet", "--pred-cols", "p", "--target-cols", "y",
                    "--group-by", "src")  # fmt: skip
    assert "by src" in table.stdout and "mean loss" in table.stdout


def test_group_by_refusals(grouped_table, monkeypatch):
    from losscli.views import group_by

    path, *_ = grouped_table
    single = ["--pred-cols", "a,b,c", "--target-cols", "label"]
    assert_usage_error(run_cli("ce", path, path, "--group-by", "split"), "--pred-cols")
    assert_usage_error(run_cli("ce", path, *single, "--group-by", "nope"), "no column 'nope'")
    assert_usage_error(run_cli("ce", path, *single, "--group-by", "split,fold"), "one column")
    monkeypatch.setattr(group_by, "MAX_GROUPS", 3)
    assert_usage_error(run_cli("ce", path, *single, "--group-by", "fold"), "more than 3 values")


# ------------------------------------------------------------------ the README's examples


def _section_examples() -> list[str]:
    """The commands quoted in the README's "Beyond the number" section."""
    import re
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "docs" / "outputs.md").read_text()
    section = readme[readme.index("## Beyond the number") :]
    section = section.split("\n## ")[0]  # up to the next section
    found = re.findall(r"`(losscli [^`]*sample_data[^`]*)`", section)
    return list(dict.fromkeys(" ".join(c.split()) for c in found))


def test_every_beyond_the_number_example_runs_and_gives_its_view(monkeypatch):
    import shlex
    from pathlib import Path

    from sklearn.metrics import log_loss

    monkeypatch.chdir(Path(__file__).parents[1])
    examples = _section_examples()
    views = {"--group-by": "by_group", "--top": "top", "--hist": "hist", "--check": "check",
             "compare": "difference"}  # fmt: skip
    for flag in views:
        assert any(flag in e for e in examples), flag
    for example in examples:
        out = run_cli(*shlex.split(example)[1:], "-f", "json")
        assert out.exit_code == 0, (example, out.stderr)
        got = json.loads(out.stdout)
        for flag, key in views.items():
            if flag in example.split():
                assert got.get(key) is not None, (example, key)
        if "--from" in example:
            probs = np.loadtxt("sample_data/probs.csv", delimiter=",")
            labels = np.loadtxt("sample_data/labels.csv", dtype=int)
            assert got["value"] == pytest.approx(log_loss(labels, probs, labels=range(5)), rel=1e-6)
        if "--dtype bfloat16" in example and "--check" in example:
            assert got["check"]["value_rel_error"] > 0
    table = run_cli(*shlex.split(next(e for e in examples if "--hist" in e))[1:])
    readme = (Path(__file__).parents[1] / "docs" / "outputs.md").read_text()
    for line in table.stdout.splitlines()[-35:]:  # the sample in the README is real output
        if "#" in line or line.startswith("p50"):
            assert line.rstrip() in readme, line
