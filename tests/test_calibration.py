"""--calibration BINS: the ECE and the bins against an independent NumPy computation and a
hand-computed case, for ce, nll, bce and bce-logits; the same by blocks, merged states and
--dask local; compare; the domain."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import assert_usage_error, run_cli, run_process

BINS = 10


def _json(*args) -> dict:
    out = run_cli(*args, "-f", "json")
    assert out.exit_code == 0, out.stderr
    return json.loads(out.stdout)


def _reference(confidence, right, bins: int) -> dict:
    """The ECE and bins from the confidences and rightness of the kept predictions, with
    NumPy's digitize over edges from linspace (1.0 in the last bin)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.digitize(confidence, edges[1:-1])
    rows, ece = [], 0.0
    for i in range(bins):
        inside = index == i
        n = int(inside.sum())
        mean = confidence[inside].mean() if n else None
        accuracy = right[inside].mean() if n else None
        if n:
            ece += n / len(confidence) * abs(accuracy - mean)
        rows.append({"lower": edges[i], "upper": edges[i + 1], "count": n,
                     "confidence": mean, "accuracy": accuracy})  # fmt: skip
    return {"ece": ece, "bins": rows}


def _assert_same(got: dict, want: dict, rel: float = 1e-9) -> None:
    assert got["ece"] == pytest.approx(want["ece"], rel=rel, abs=1e-15)
    assert len(got["bins"]) == len(want["bins"])
    for g, w in zip(got["bins"], want["bins"]):
        assert g["count"] == w["count"]
        assert g["lower"] == pytest.approx(w["lower"]) and g["upper"] == pytest.approx(w["upper"])
        for key in ("confidence", "accuracy"):
            if w[key] is None:
                assert g[key] is None
            else:
                assert g[key] == pytest.approx(w[key], rel=rel)


def _softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture
def classes(tmp_path, rng):
    """Logits, log-probabilities and probabilities of 200 rows of 4 classes (some targets
    ignored), and the reference for ce/nll."""
    y = rng.integers(0, 4, 200)
    logits = rng.normal(size=(200, 4)) * 2 + 1.5 * np.eye(4)[y]
    y[::9] = -100
    probs = _softmax(logits)
    np.save(tmp_path / "logits.npy", logits)
    np.save(tmp_path / "logp.npy", np.log(probs))
    np.save(tmp_path / "probs.npy", probs)
    np.save(tmp_path / "y.npy", y)
    kept = y != -100
    confidence = probs[kept].max(axis=1)
    right = probs[kept].argmax(axis=1) == y[kept]
    return tmp_path, _reference(confidence, right, BINS)


@pytest.mark.parametrize(
    ("loss", "preds", "extra"),
    [
        ("ce", "logits.npy", []),
        ("nll", "logp.npy", []),
        ("ce", "probs.npy", ["--from", "probs"]),
        ("nll", "probs.npy", ["--from", "probs"]),
    ],
)
def test_class_losses_match_numpy_whole_by_blocks_and_merged(classes, loss, preds, extra):
    path, want = classes
    args = [loss, path / preds, path / "y.npy", "--dtype", "float64", *extra]
    whole = _json(*args, "--calibration", str(BINS))["calibration"]
    _assert_same(whole, want)
    blocks = _json(*args, "--calibration", str(BINS), "--block-rows", "7")["calibration"]
    _assert_same(blocks, whole, rel=1e-12)
    x, y = path / preds, path / "y.npy"
    for name, rows in (("a", "0:83"), ("b", "83:200")):
        part = [f"{x}?rows={rows}", f"{y}?rows={rows}", "--dtype", "float64", *extra]
        out = run_cli(
            loss, *part, "--calibration", str(BINS), "--emit-state", path / f"{name}.json"
        )
        assert out.exit_code == 0, out.stderr
    merged = _json("merge", path / "a.json", path / "b.json")["calibration"]
    _assert_same(merged, whole, rel=1e-12)
    asked = _json("merge", path / "a.json", path / "b.json", "--calibration", str(BINS))
    _assert_same(asked["calibration"], whole, rel=1e-12)


def test_a_hand_computed_case(tmp_path):
    """bce, p = 0.9, 0.8, 0.3, 0.6 and targets 1, 0, 1, 1 in 2 bins: every confidence
    (0.9, 0.8, 0.7, 0.6) is in [0.5, 1]; right: yes, no, no, yes; ECE |0.5 - 0.75|."""
    (tmp_path / "t.csv").write_text("p,y\n0.9,1\n0.8,0\n0.3,1\n0.6,1\n")
    out = run_cli("bce", tmp_path / "t.csv", "--pred-cols", "p", "--target-cols", "y",
                  "--calibration", "2", "-f", "json")  # fmt: skip
    assert out.exit_code == 0, out.stderr
    got = json.loads(out.stdout)["calibration"]
    assert got["ece"] == pytest.approx(0.25)
    assert got["bins"][0] == {"lower": 0.0, "upper": 0.5, "count": 0, "confidence": None,
                              "accuracy": None}  # fmt: skip
    assert got["bins"][1]["count"] == 4
    assert got["bins"][1]["confidence"] == pytest.approx(0.75)
    assert got["bins"][1]["accuracy"] == pytest.approx(0.5)


@pytest.mark.parametrize("loss", ["bce", "bce-logits"])
def test_binary_losses_match_numpy_and_leave_out_targets_not_0_or_1(tmp_path, rng, loss):
    x = rng.normal(size=(120, 3)) * 2
    y = (rng.random((120, 3)) < 1 / (1 + np.exp(-x))).astype(np.float64)
    y[5, 1] = 0.5  # not a 0/1 target: left out, said in a warning
    p = 1 / (1 + np.exp(-x))
    np.save(tmp_path / "x.npy", x if loss == "bce-logits" else p)
    np.save(tmp_path / "y.npy", y)
    binary = (y == 0) | (y == 1)
    confidence = np.maximum(p, 1 - p)[binary]
    right = ((p > 0.5) == (y == 1))[binary]
    want = _reference(confidence, right, 15)
    args = [loss, tmp_path / "x.npy", tmp_path / "y.npy", "--dtype", "float64",
            "--calibration", "15"]  # fmt: skip
    got = _json(*args)
    _assert_same(got["calibration"], want)
    assert any("1 elements left out" in w for w in got["warnings"])
    _assert_same(_json(*args, "--block-rows", "11")["calibration"], got["calibration"], 1e-12)


def test_bce_from_logits_is_bce_logits(tmp_path, rng):
    x = rng.normal(size=(60, 2))
    y = (rng.random((60, 2)) < 0.5).astype(np.float64)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    common = [tmp_path / "x.npy", tmp_path / "y.npy", "--dtype", "float64", "--calibration", "5"]
    a = _json("bce", *common, "--from", "logits")["calibration"]
    b = _json("bce-logits", *common)["calibration"]
    _assert_same(a, b, rel=1e-12)


def test_dask_local_equals_one_process(tmp_path, rng):
    pytest.importorskip("distributed")
    (tmp_path / "p").mkdir()
    (tmp_path / "y").mkdir()
    for i, n in enumerate([30, 7, 55]):
        y = rng.integers(0, 5, n)
        y[::6] = -100
        np.save(tmp_path / "p" / f"part-{i}.npy", rng.normal(size=(n, 5)) * 2)
        np.save(tmp_path / "y" / f"part-{i}.npy", y)
    args = ["ce", tmp_path / "p", tmp_path / "y", "--dtype", "float64", "--calibration", "8"]
    one = _json(*args)["calibration"]
    many = _json(*args, "--dask", "local")["calibration"]
    _assert_same(many, one, rel=1e-12)


def test_compare_reports_both_eces_and_their_difference(classes):
    path, want = classes
    np.save(path / "flat.npy", np.load(path / "logits.npy") * 0.2)  # less confident
    got = _json("compare", "ce", path / "logits.npy", path / "flat.npy", path / "y.npy",
                "--dtype", "float64", "--calibration", str(BINS))  # fmt: skip
    compared = got["calibration"]
    assert compared["ece_a"] == pytest.approx(want["ece"], rel=1e-9)
    assert compared["ece_b"] == pytest.approx(got["b"]["calibration"]["ece"])
    assert compared["difference"] == pytest.approx(compared["ece_b"] - compared["ece_a"])
    table = run_cli("compare", "ce", path / "logits.npy", path / "flat.npy", path / "y.npy",
                    "--calibration", str(BINS))  # fmt: skip
    assert "calibration (ECE)" in table.stdout


def test_the_table_draws_each_bin(classes):
    path, _ = classes
    out = run_cli("ce", path / "logits.npy", path / "y.npy", "--calibration", "5")
    assert out.exit_code == 0, out.stderr
    assert "accuracy (#) vs mean confidence (|)" in out.stdout and "ECE" in out.stdout
    assert out.stdout.count("0.8") >= 1 and "#" in out.stdout


def test_domain_and_losses_are_refused(classes, tmp_path):
    path, _ = classes
    args = ["ce", path / "logits.npy", path / "y.npy", "--calibration"]
    for bins in ("1", "1001"):
        refused = run_process(*args, bins)  # as the user sees it: one line
        assert refused.returncode == 2 and b"--calibration" in refused.stderr
        assert b"valid: 2 to 1000" in refused.stderr and len(refused.stderr.splitlines()) == 1
    np.save(tmp_path / "t.npy", np.zeros((200, 4)))
    out = run_cli("mse", path / "logits.npy", tmp_path / "t.npy", "--calibration", "10")
    assert_usage_error(out, "--calibration applies to ce, nll, bce, bce-logits, not mse")
    probs = _softmax(np.load(path / "logits.npy"))
    np.save(tmp_path / "soft.npy", probs)
    out = run_cli("ce", path / "logits.npy", tmp_path / "soft.npy", "--calibration", "10")
    assert_usage_error(out, "class-index targets")


def test_merge_refuses_states_of_other_bins(classes):
    path, _ = classes
    x, y = path / "logits.npy", path / "y.npy"
    for name, rows, bins in (("a", "0:100", "10"), ("b", "100:200", "12")):
        run_cli("ce", f"{x}?rows={rows}", f"{y}?rows={rows}", "--calibration", bins,
                "--emit-state", path / f"{name}.json")  # fmt: skip
    out = run_cli("merge", path / "a.json", path / "b.json")
    assert_usage_error(out, "--calibration bins", "a.json", "b.json")
    out = run_cli("merge", path / "a.json", "--calibration", "12")
    assert_usage_error(out, "--calibration 12", "10 bins")
    run_cli("ce", f"{x}?rows=100:200", f"{y}?rows=100:200", "--emit-state", path / "c.json")
    assert_usage_error(run_cli("merge", path / "c.json", "--calibration", "10"), "no calibration")
    mixed = _json("merge", path / "a.json", path / "c.json")
    assert "calibration" not in mixed
    assert any("--calibration" in w and "without it" in w for w in mixed["warnings"])
