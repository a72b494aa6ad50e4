"""--from logits|probs|log-probs: converted predictions against scikit-learn's log_loss,
SciPy and NumPy; gradients with respect to the predictions as given; refusals; the warnings
that name the option."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import special, stats
from sklearn.metrics import log_loss

from tests.conftest import assert_usage_error, run_cli


def _json(*args) -> dict:
    out = run_cli(*args, "-f", "json")
    assert out.exit_code == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture
def probs(rng):
    x = rng.normal(size=(40, 4)) * 1.5
    p = special.softmax(x, axis=1)
    y = rng.integers(0, 4, 40)
    return x, p, y


@pytest.mark.parametrize("extra", [[], ["--block-rows", "7"]])
def test_ce_from_probs_equals_sklearn_log_loss(files, probs, extra):
    _, p, y = probs
    expected = log_loss(y, p, labels=range(4))
    for pred in (files.csv("p.csv", p), files.npy("p.npy", p)):
        got = _json("ce", pred, files.npy("y.npy", y), "--from", "probs", "--dtype", "float64",
                    *extra)  # fmt: skip
        assert got["value"] == pytest.approx(expected, rel=1e-12)
        assert not any("probabilities" in w for w in got["warnings"])


def test_nll_and_kl_div_from_probs_and_logits(files, probs):
    x, p, y = probs
    xp, pp, yp = files.npy("x.npy", x), files.npy("p.npy", p), files.npy("y.npy", y)
    f64 = ("--dtype", "float64")
    expected = log_loss(y, p, labels=range(4))
    assert _json("nll", pp, yp, "--from", "probs", *f64)["value"] == pytest.approx(expected)
    assert _json("nll", xp, yp, "--from", "logits", *f64)["value"] == pytest.approx(
        _json("ce", xp, yp, *f64)["value"], rel=1e-12
    )
    t = special.softmax(np.random.default_rng(5).normal(size=x.shape), axis=1)
    tp = files.npy("t.npy", t)
    kl = np.mean([stats.entropy(t[i], p[i]) for i in range(len(t))])
    for pred, kind in ((pp, "probs"), (xp, "logits")):
        got = _json("kl-div", pred, tp, "--from", kind, "-r", "batchmean", *f64)
        assert got["value"] == pytest.approx(kl, rel=1e-10)
        assert not any("log-probabilities" in w for w in got["warnings"])


def test_bce_family_from_every_kind_equals_sklearn(files, rng):
    z = rng.normal(size=50) * 2
    p = special.expit(z)
    y = rng.integers(0, 2, 50).astype(float)
    expected = log_loss(y, p)
    yp = files.npy("y.npy", y)
    given = {"logits": z, "probs": p, "log-probs": np.log(p)}
    for loss in ("bce", "bce-logits"):
        for kind, values in given.items():
            got = _json(loss, files.npy(f"{kind}.npy", values), yp, "--from", kind,
                        "--dtype", "float64")  # fmt: skip
            assert got["value"] == pytest.approx(expected, rel=1e-9), (loss, kind)


def test_gradient_is_with_respect_to_the_predictions_as_given(files, probs, tmp_path):
    _, p, y = probs
    out = tmp_path / "g.npy"
    run_cli("ce", files.npy("p.npy", p), files.npy("y.npy", y), "--from", "probs",
            "--dtype", "float64", "--grad-out", out)  # fmt: skip
    # d/dp_j of -log(p_y / sum p), over N rows: (1/sum p - [j = y] / p_y) / N
    expected = 1.0 / p.sum(1, keepdims=True) - np.eye(4)[y] / p[np.arange(40), y][:, None]
    np.testing.assert_allclose(np.load(out), expected / len(y), rtol=1e-9)
    # and bce from logits: the sigmoid's chain rule, (sigmoid(z) - y) / N
    z = np.linspace(-3, 3, 12)
    t = (np.arange(12) % 2).astype(float)
    run_cli("bce", files.npy("z.npy", z), files.npy("t.npy", t), "--from", "logits",
            "--dtype", "float64", "--grad-out", out)  # fmt: skip
    np.testing.assert_allclose(np.load(out), (special.expit(z) - t) / 12, rtol=1e-9)


def test_from_refuses_values_that_are_not_what_it_says(files, probs):
    x, p, y = probs
    yp = files.npy("y.npy", y)
    assert_usage_error(
        run_cli("ce", files.npy("x.npy", x), yp, "--from", "probs"), "--from probs", "[0, 1]"
    )
    assert_usage_error(
        run_cli("nll", files.npy("p.npy", p), yp, "--from", "log-probs", "--block-rows", "3"),
        "--from log-probs",
    )
    assert_usage_error(run_cli("mse", files.npy("x.npy", x), files.npy("x.npy", x), "--from",
                               "probs"), "--from applies to")  # fmt: skip
    out = run_cli("ce", files.npy("x.npy", x), yp, "--from", "odds")
    assert out.exit_code == 2


def test_from_what_the_loss_takes_changes_nothing(files, probs):
    x, _, y = probs
    xp, yp = files.npy("x.npy", x), files.npy("y.npy", y)
    assert _json("ce", xp, yp, "--from", "logits")["value"] == _json("ce", xp, yp)["value"]


@pytest.mark.parametrize("decimals", [2, 3, None])
def test_probabilities_warning_names_from_probs_also_when_rounded(files, probs, decimals):
    _, p, y = probs
    if decimals is not None:
        p = np.round(p, decimals)
        p[:, -1] = np.round(1 - p[:, :-1].sum(1), decimals)  # rows as a writer rounds them
        p = np.clip(p, 0, 1)
        text = "\n".join(",".join(f"{v:.{decimals}f}" for v in row) for row in p)
        pred = files.text("p.csv", text + "\n")
    else:
        pred = files.csv("p.csv", p)
    out = run_cli("ce", pred, files.npy("y.npy", y))
    assert out.exit_code == 0
    assert "look like probabilities" in out.stderr and "--from probs" in out.stderr
    quiet = run_cli("ce", pred, files.npy("y.npy", y), "--from", "probs")
    assert "look like probabilities" not in quiet.stderr
