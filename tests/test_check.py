"""--check: the float64 CPU recomputation against NumPy formulas, the relative errors it
reports against errors computed here, the finite-difference check (which must catch a wrong
gradient), merging, and the warning on a large error."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tests import reference as ref
from tests.conftest import run_cli
from tests.test_reference import _case_id, _reference
from tests.test_stream import STREAMED, _write, option_args


def _json(*args) -> dict:
    out = run_cli(*args, "-f", "json")
    assert out.exit_code == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize("case", STREAMED, ids=_case_id)
def test_check_reference_is_the_numpy_formula_for_every_streamed_loss(case, tmp_path):
    paths = _write(tmp_path, case, "npy")
    got = _json(case.loss, *paths, *option_args(case), "--check", "--block-rows", "5")
    check = got["check"]
    expected = _reference(case, case.inputs, "mean")
    assert check["reference_value"] == pytest.approx(float(expected), rel=1e-10, abs=1e-14)
    # float32 against float64: small, and as computed from the two values
    assert check["value_rel_error"] < 1e-4
    assert check["grad_rel_error"] < 1e-4
    if abs(expected) > 1e-12:
        assert check["value_rel_error"] == pytest.approx(
            abs(got["value"] - float(expected)) / abs(float(expected)), rel=1e-3, abs=1e-12
        )
    if check["fd_points"]:
        assert check["fd_max_rel_error"] < 1e-4
    assert not any("--check" in w for w in got["warnings"])


def test_relative_errors_of_a_narrow_dtype_match_numpy_and_warn(tmp_path, rng):
    a = (rng.normal(size=(3000, 4)) * 0.01 + 20).astype(np.float32)
    b = (rng.normal(size=(3000, 4)) * 0.01 + 20).astype(np.float32)
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    exact = np.mean((a64 - b64) ** 2)
    exact_grad = 2 * (a64 - b64) / a.size
    for dtype in ("float16", "bfloat16"):
        out = run_cli("mse", tmp_path / "a.npy", tmp_path / "b.npy", "--check", "--dtype", dtype,
                      "--grad-out", tmp_path / "g.npy", "-f", "json")  # fmt: skip
        got = json.loads(out.stdout)
        check = got["check"]
        assert check["reference_value"] == pytest.approx(exact, rel=1e-12)
        assert check["value_rel_error"] == pytest.approx(abs(got["value"] - exact) / exact)
        g = np.load(tmp_path / "g.npy").astype(np.float64)
        expected = np.linalg.norm(g - exact_grad) / np.linalg.norm(exact_grad)
        assert check["grad_rel_error"] == pytest.approx(expected, rel=1e-4)
        assert check["value_rel_error"] > 1e-3
        assert "losscli: warning: --check: the value in --dtype " + dtype in out.stderr
        assert check["fd_max_rel_error"] < 1e-6  # the float64 gradient itself is right


def test_finite_differences_catch_a_wrong_gradient(monkeypatch, tmp_path, rng):
    """A loss whose backward is wrong (3x instead of 2x): the check says so."""
    import torch

    from losscli import check, registry
    from losscli.validate import Prepared

    class WrongSquare(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return 3 * x * grad

    class WrongLoss(torch.nn.Module):
        def __init__(self, reduction="mean"):
            super().__init__()
            self.reduction = reduction

        def forward(self, x, t):
            elements = WrongSquare.apply(x - t)
            return elements.sum() if self.reduction == "sum" else elements

    monkeypatch.setattr(torch.nn, "WrongLoss", WrongLoss, raising=False)
    spec = registry.LossSpec(
        name="wrong", torch_class="WrongLoss", task="testing", summary="a wrong gradient",
        inputs=(registry.InputSpec("predictions", registry.FLOAT, "any"),
                registry.InputSpec("targets", registry.FLOAT, "same shape")),
        example="", explain=registry.Explain("", (), ()), prepare=lambda i, o, c: None,
    )  # fmt: skip
    x, t = rng.normal(size=(10, 3)), rng.normal(size=(10, 3))
    worst, points = check.finite_differences(
        spec, Prepared({"predictions": x, "targets": t}, {}), None, None
    )
    assert points > 0 and worst == pytest.approx(1 / 3, rel=1e-4)  # |2 - 3| / 3
    report = check.report(
        {"sum": 1.0, "denominator": 1.0, "grad_diff_squares": 0.0, "grad_ref_squares": 1.0,
         "fd_max_rel_error": worst, "fd_points": points},
        1.0, "float32", "cpu",
    )  # fmt: skip
    assert "finite differences" in report["warnings"][0]


def test_finite_differences_skip_kinks_and_agree_on_smooth_points(tmp_path):
    a = np.array([[0.0, 1.0], [2.0, -1.0], [3.0, 3.0]])
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", np.array([[0.0, 0.5], [2.0, 0.0], [1.0, 3.0]]))
    got = _json("l1", tmp_path / "a.npy", tmp_path / "b.npy", "--check", "--dtype", "float64")
    check = got["check"]
    assert check["value_rel_error"] == 0 and check["grad_rel_error"] == 0
    assert check["fd_points"] == 3  # the three points where a - b = 0 are kinks
    assert check["fd_max_rel_error"] < 1e-8


def test_check_merges_and_runs_without_gradients(tmp_path, rng):
    x, y = rng.normal(size=(30, 5)), rng.integers(0, 5, 30)
    differences = references = 0.0
    for name, rows in (("a", slice(0, 11)), ("b", slice(11, None))):
        np.save(tmp_path / f"x{name}.npy", x[rows])
        np.save(tmp_path / f"y{name}.npy", y[rows])
        run_cli("ce", tmp_path / f"x{name}.npy", tmp_path / f"y{name}.npy", "--check",
                "--emit-state", tmp_path / f"{name}.json", "--grad-out",
                tmp_path / f"g{name}.npy")  # fmt: skip
        # The part's float32 gradient of its mean, as the gradient of its sum, against
        # softmax minus the one-hot in float64.
        count = len(y[rows])
        got = np.load(tmp_path / f"g{name}.npy").astype(np.float64) * count
        reference = np.exp(ref.log_softmax(x[rows], axis=1)) - np.eye(5)[y[rows]]
        differences += float(((got - reference) ** 2).sum())
        references += float((reference**2).sum())
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    whole = _json("ce", tmp_path / "x.npy", tmp_path / "y.npy", "--check")["check"]
    merged = _json("merge", tmp_path / "a.json", tmp_path / "b.json")["check"]
    assert merged["reference_value"] == pytest.approx(whole["reference_value"], rel=1e-12)
    # The error of the float32 gradients each part computed (the whole run's rounds others).
    assert merged["grad_rel_error"] == pytest.approx(math.sqrt(differences / references), rel=1e-6)
    assert 0 < merged["grad_rel_error"] < 1e-6 and 0 < whole["grad_rel_error"] < 1e-6
    assert merged["fd_points"] == 2 * 3 * 4
    no_grad = _json("ce", tmp_path / "x.npy", tmp_path / "y.npy", "--check", "--no-grad")
    assert no_grad["check"]["grad_rel_error"] is None and no_grad["check"]["fd_points"] == 0
    out = run_cli("ce", tmp_path / "x.npy", tmp_path / "y.npy", "--check")
    assert "relative error vs float64 on cpu" in out.stdout


def test_check_of_reduction_none_compares_the_sum_of_the_elements(tmp_path, rng):
    a, b = rng.normal(size=(9, 2)), rng.normal(size=(9, 2))
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    got = _json("mse", tmp_path / "a.npy", tmp_path / "b.npy", "--check", "-r", "none")
    assert got["check"]["reference_value"] == pytest.approx(((a - b) ** 2).sum(), rel=1e-12)
    assert got["check"]["value_rel_error"] < 1e-6
