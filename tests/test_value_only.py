"""A run computes what it shows or writes: ``-f value`` prints one number, so it keeps no
gradient summary, no always-on view, and only the gradient --grad-out writes. What it
prints and writes is the same as a run that shows everything."""

from __future__ import annotations

import json

import numpy as np
import pytest

from losscli import engine
from tests.conftest import run_cli

rng = np.random.default_rng(41)
ROWS, WIDTH = 600, 4
CASES = {
    "ce": lambda: rng.integers(0, WIDTH, ROWS),
    "bce-logits": lambda: rng.random((ROWS, WIDTH)),
    "mse": lambda: rng.normal(size=(ROWS, WIDTH)),
    "huber": lambda: rng.normal(size=(ROWS, WIDTH)),
    "nll": lambda: rng.integers(0, WIDTH, ROWS),
}


def _inputs(tmp_path, loss):
    predictions = rng.normal(size=(ROWS, WIDTH)).astype(np.float32)
    if loss == "nll":
        predictions = predictions - np.log(np.exp(predictions).sum(1, keepdims=True))
    np.save(tmp_path / "p.npy", predictions)
    np.save(tmp_path / "t.npy", CASES[loss]())
    return tmp_path / "p.npy", tmp_path / "t.npy"


@pytest.mark.parametrize("loss", sorted(CASES))
@pytest.mark.parametrize("block_rows", [None, 7, 250])
def test_value_format_prints_and_writes_what_json_does(tmp_path, loss, block_rows):
    p, t = _inputs(tmp_path, loss)
    blocks = [] if block_rows is None else ["--block-rows", str(block_rows)]
    shown = run_cli(loss, p, t, "-f", "json", "--grad-out", tmp_path / "a.npy", *blocks)
    bare = run_cli(loss, p, t, "-f", "value", "--grad-out", tmp_path / "b.npy", *blocks)
    assert shown.exit_code == bare.exit_code == 0, (shown.stderr, bare.stderr)
    assert float(bare.stdout) == json.loads(shown.stdout)["value"]
    assert (tmp_path / "a.npy").read_bytes() == (tmp_path / "b.npy").read_bytes()
    assert bare.stderr == shown.stderr == ""


@pytest.mark.parametrize("loss", ["bce-logits", "mse"])
def test_value_format_keeps_the_same_state(tmp_path, loss):
    p, t = _inputs(tmp_path, loss)
    for name, form in (("a.json", "json"), ("b.json", "value")):
        state = ["--emit-state", tmp_path / name, "--block-rows", "50"]
        done = run_cli(loss, p, t, "-f", form, *state)
        assert done.exit_code == 0, done.stderr
    a, b = (json.loads((tmp_path / n).read_text()) for n in ("a.json", "b.json"))
    for state in (a, b):
        state.pop("timing", None)
    assert a == b
    assert set(a["gradient"]) == {"predictions", "targets"}  # both are differentiable


def _counted(monkeypatch):
    """Each gradient the summaries take, by shape."""
    taken = []
    add = engine.GradientStats.add

    def counting(self, gradient, *args, **kwargs):
        taken.append(gradient.shape)
        return add(self, gradient, *args, **kwargs)

    monkeypatch.setattr(engine.GradientStats, "add", counting)
    return taken


def test_value_format_computes_no_summary_and_no_gradient_it_does_not_write(tmp_path, monkeypatch):
    p, t = _inputs(tmp_path, "bce-logits")
    taken = _counted(monkeypatch)
    computed = []
    run = engine.BlockRun.add

    def recording(self, *args, **kwargs):
        gradients = run(self, *args, **kwargs)
        computed.append(sorted(gradients))
        return gradients

    monkeypatch.setattr(engine.BlockRun, "add", recording)
    assert run_cli("bce-logits", p, t, "-f", "value").exit_code == 0
    assert taken == [] and computed == [[]]
    computed.clear()
    out = tmp_path / "g.npy"
    assert run_cli("bce-logits", p, t, "-f", "value", "--grad-out", out).exit_code == 0
    assert taken == [] and computed == [["predictions"]]
    computed.clear()
    assert run_cli("bce-logits", p, t, "-f", "json").exit_code == 0
    assert taken == [(ROWS, WIDTH), (ROWS, WIDTH)] and computed == [["predictions", "targets"]]


def test_value_format_with_check_still_checks_the_gradient(tmp_path, monkeypatch):
    """--check reads the gradients (its view says so): -f value computes them for it."""
    p, t = _inputs(tmp_path, "mse")
    done = run_cli("mse", p, t, "-f", "json", "--check")
    assert done.exit_code == 0
    assert json.loads(done.stdout)["check"]["grad_rel_error"] is not None
    bare = run_cli("mse", p, t, "-f", "value", "--check")
    assert bare.exit_code == 0 and float(bare.stdout) == json.loads(done.stdout)["value"]
