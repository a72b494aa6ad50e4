"""losscli compare LOSS A B TARGETS...: both losses, the paired difference and its 95%
interval against SciPy, per-class differences against NumPy, the --fail-if-worse gate."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from losscli.registry import all_specs
from tests.conftest import ROOT, Outcome, assert_usage_error, run_cli, run_process
from tests.test_views import _ce_rows


def _json(*args) -> dict:
    out = run_cli("compare", *args, "-f", "json")
    assert out.exit_code == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture
def two_models(tmp_path, rng):
    y = rng.integers(0, 4, 200)
    a = rng.normal(size=(200, 4))
    b = a + 1.5 * np.eye(4)[y] + rng.normal(size=(200, 4)) * 0.3  # b is better
    for name, array in (("a", a), ("b", b), ("y", y)):
        np.save(tmp_path / f"{name}.npy", array)
    return tmp_path, a, b, y


@pytest.mark.parametrize("extra", [[], ["--block-rows", "7"]])
def test_paired_difference_and_interval_match_scipy(two_models, extra):
    path, a, b, y = two_models
    got = _json("ce", path / "a.npy", path / "b.npy", path / "y.npy", "--dtype", "float64", *extra)
    la, lb = _ce_rows(a, y), _ce_rows(b, y)
    assert got["a"]["value"] == pytest.approx(la.mean(), rel=1e-12)
    assert got["b"]["value"] == pytest.approx(lb.mean(), rel=1e-12)
    d = lb - la
    difference = got["difference"]
    assert difference["value"] == pytest.approx(d.mean(), rel=1e-10)
    assert difference["stderr"] == pytest.approx(stats.sem(d), rel=1e-9)
    low, high = stats.norm.interval(0.95, loc=d.mean(), scale=stats.sem(d))
    assert difference["ci95"] == pytest.approx([low, high], rel=1e-9)
    assert high < 0  # b is better, and the interval says so
    # a paired t-test agrees on the direction
    assert stats.ttest_rel(lb, la).statistic < 0


def test_by_class_differences_and_table(two_models):
    path, a, b, y = two_models
    got = _json("ce", path / "a.npy", path / "b.npy", path / "y.npy", "--dtype", "float64",
                "--by-class")  # fmt: skip
    la, lb = _ce_rows(a, y), _ce_rows(b, y)
    for row in got["by_class"]:
        rows = y == row["class"]
        assert row["count"] == rows.sum()
        assert row["mean_a"] == pytest.approx(la[rows].mean(), rel=1e-12)
        assert row["difference"] == pytest.approx(lb[rows].mean() - la[rows].mean(), rel=1e-9)
    table = run_cli("compare", "ce", path / "a.npy", path / "b.npy", path / "y.npy", "--by-class")
    assert "b is better (lower loss)" in table.stdout and "by class: b - a" in table.stdout


def test_elementwise_loss_pairs_every_element_and_three_input_losses(tmp_path, rng):
    t, p, q = rng.normal(size=(3, 50, 3))
    for name, array in (("t", t), ("p", p), ("q", q)):
        np.save(tmp_path / f"{name}.npy", array)
    got = _json("mse", tmp_path / "p.npy", tmp_path / "q.npy", tmp_path / "t.npy",
                "--dtype", "float64")  # fmt: skip
    d = ((q - t) ** 2 - (p - t) ** 2).reshape(-1)
    assert got["difference"]["value"] == pytest.approx(d.mean(), rel=1e-10)
    assert got["difference"]["stderr"] == pytest.approx(stats.sem(d), rel=1e-9)
    x2, sign = rng.normal(size=50), np.where(rng.random(50) < 0.5, -1.0, 1.0)
    np.save(tmp_path / "x1a.npy", t[:, 0])
    np.save(tmp_path / "x1b.npy", p[:, 0])
    np.save(tmp_path / "x2.npy", x2)
    np.save(tmp_path / "y.npy", sign)
    got = _json("margin-ranking", tmp_path / "x1a.npy", tmp_path / "x1b.npy", tmp_path / "x2.npy",
                tmp_path / "y.npy", "--margin", "0.5", "--dtype", "float64")  # fmt: skip
    for side, x1 in (("a", t[:, 0]), ("b", p[:, 0])):
        expected = np.maximum(0, -sign * (x1 - x2) + 0.5).mean()
        assert got[side]["value"] == pytest.approx(expected, rel=1e-12)


def test_fail_if_worse_gates_with_its_line(two_models):
    path, *_ = two_models
    worse = run_process("compare", "ce", path / "b.npy", path / "a.npy", path / "y.npy",
                        "--fail-if-worse", "0.05", "-f", "value")  # fmt: skip
    assert worse.returncode == 1
    assert b"losscli: gate: b is worse than a by" in worse.stderr
    assert float(worse.stdout) > 0.05
    fine = run_cli("compare", "ce", path / "a.npy", path / "b.npy", path / "y.npy",
                   "--fail-if-worse", "0")  # fmt: skip
    assert fine.exit_code == 0 and "passed" in fine.stdout
    same = _json("ce", path / "a.npy", path / "a.npy", path / "y.npy", "--fail-if-worse", "0")
    assert same["difference"]["value"] == 0 and same["difference"]["stderr"] == 0
    assert same["gate"]["tripped"] is False


def test_compare_refuses_what_it_cannot_pair(two_models, tmp_path):
    path, a, *_ = two_models
    args = [path / "a.npy", path / "b.npy", path / "y.npy"]
    assert_usage_error(run_cli("compare", "ce", *args[:2]), "takes 3 inputs")
    none = run_process("compare", "ce", *args, "-r", "none")
    assert none.returncode == 2 and b"'none' is not one of 'mean', 'sum'" in none.stderr
    assert_usage_error(run_cli("compare", "ce", *args, "--fail-if-worse", "nan"), "finite")
    np.save(tmp_path / "short.npy", a[:150])
    out = run_cli("compare", "ce", path / "a.npy", tmp_path / "short.npy", path / "y.npy")
    assert out.exit_code == 2 and "Traceback" not in out.stderr
    unknown = run_process("compare", "nope", *args)
    assert unknown.returncode == 2


def test_compare_reads_a_from_stdin(two_models):
    path, a, b, y = two_models
    data = (path / "a.npy").read_bytes()
    out = run_process("compare", "ce", "-", path / "b.npy", path / "y.npy", "-f", "json",
                      "--dtype", "float64", input=data)  # fmt: skip
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["difference"]["value"] == pytest.approx((_ce_rows(b, y) - _ce_rows(a, y)).mean())


def _example_inputs(loss: str, tmp_path) -> tuple[np.ndarray, list, list[str]]:
    """The first input of ``loss``'s documented example as an array, the other inputs'
    paths and the example's options: valid inputs for every loss."""
    import shlex

    from losscli.registry import get_spec

    words = shlex.split(get_spec(loss).example)[2:]
    count = len(get_spec(loss).inputs)
    paths, options = [ROOT / word for word in words[:count]], words[count:]
    first = paths[0]
    a = np.load(first) if first.suffix == ".npy" else np.loadtxt(first, delimiter=",")
    np.save(tmp_path / "a.npy", a)
    return a, paths[1:], options


def _other_shapes(a: np.ndarray) -> dict[str, np.ndarray]:
    """Predictions B that differ from A on one axis each (a model of another size)."""
    shapes = {
        "fewer rows": a[:-1],
        "more rows": np.concatenate([a, a[:1]]),
        "an extra axis": a[..., None],
        "0-d": np.asarray(a.flat[0]),
    }
    if a.ndim >= 2:
        shapes["fewer columns"] = a[:, :-1]
        shapes["more columns"] = np.concatenate([a, a[:, :1]], axis=1)
        shapes["one axis less"] = a.reshape(len(a), -1)[:, 0]
        shapes["transposed"] = np.swapaxes(a, 0, 1) if a.shape[0] != a.shape[1] else a[:, :1]
    if a.ndim == 3:
        shapes["last axis shorter"] = a[..., :-1]
    return shapes


LOSSES = list(all_specs())


@pytest.mark.parametrize("extra", [[], ["--block-rows", "3"]], ids=["whole", "blocks"])
@pytest.mark.parametrize("loss", LOSSES)
def test_compare_refuses_predictions_of_different_shapes(tmp_path, loss, extra):
    a, rest, options = _example_inputs(loss, tmp_path)
    for what, b in _other_shapes(a).items():
        np.save(tmp_path / "b.npy", b)
        out = run_cli("compare", loss, tmp_path / "a.npy", tmp_path / "b.npy", *rest,
                      *options, *extra)  # fmt: skip
        assert_usage_error(out, str(list(a.shape)), str(list(b.shape)))
        assert "b is" not in out.stdout, what


@pytest.mark.parametrize("extra", [[], ["--block-rows", "3"]], ids=["whole", "blocks"])
@pytest.mark.parametrize("loss", LOSSES)
def test_compare_of_predictions_of_the_same_shape_runs(tmp_path, loss, extra):
    a, rest, options = _example_inputs(loss, tmp_path)
    got = _json(loss, tmp_path / "a.npy", tmp_path / "a.npy", *rest, *options, *extra)
    assert got["difference"]["value"] == 0.0
    assert got["a"]["value"] == got["b"]["value"]


@pytest.mark.parametrize("stdin", [False, True], ids=["file", "stdin"])
@pytest.mark.parametrize("extra", [[], ["--block-rows", "7"]], ids=["whole", "blocks"])
def test_compare_refuses_text_predictions_with_another_class_count(files, rng, extra, stdin):
    y = rng.integers(0, 4, 40)
    a = files.csv("a.csv", rng.normal(size=(40, 5)))
    b = files.csv("b.csv", rng.normal(size=(40, 4)))
    args = ["compare", "ce", "-" if stdin else a, b, files.csv("y.csv", y), *extra]
    if stdin:  # a real process: stdin is a pipe
        done = run_process(*args, input=a.read_bytes())
        out = Outcome(done.returncode, done.stdout.decode(), done.stderr.decode())
    else:
        out = run_cli(*args)
    assert_usage_error(out, "5]", "4]", "same shape")


@pytest.mark.parametrize(
    ("shift", "better"),
    [(-2.0, "b"), (2.0, "a"), (0.0, None)],
)
def test_compare_json_says_which_is_better_as_a_token(tmp_path, shift, better):
    """B's logits move towards the targets (b better), away (a better), or not at all."""
    rng = np.random.default_rng(8)
    logits = rng.normal(size=(400, 4))
    labels = rng.integers(0, 4, 400)
    towards = np.eye(4)[labels] * -shift
    np.save(tmp_path / "a.npy", logits)
    np.save(
        tmp_path / "b.npy", logits + towards + (0 if shift else rng.normal(size=(400, 4)) * 1e-9)
    )
    np.save(tmp_path / "y.npy", labels)
    out = run_cli("compare", "ce", tmp_path / "a.npy", tmp_path / "b.npy", tmp_path / "y.npy",
                  "-f", "json")  # fmt: skip
    assert out.exit_code == 0, out.stderr
    difference = json.loads(out.stdout)["difference"]
    assert difference["better"] == better
    assert ("better" in difference["verdict"]) == (better == "b")
