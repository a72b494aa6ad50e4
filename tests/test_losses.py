"""The five core losses against independent NumPy formulas and scikit-learn, through the API."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import log_loss, mean_absolute_error, mean_squared_error

import losscli
from losscli import engine
from losscli.errors import LossCliError
from losscli.io import InputArray
from losscli.registry import get_spec
from losscli.validate import Context
from tests import reference as ref

REDUCTIONS = ["mean", "sum", "none"]


def values(result):
    return np.asarray(result.value, dtype=np.float64)


@pytest.fixture
def classes(rng):
    x = rng.normal(size=(32, 6)) * 2
    y = rng.integers(0, 6, size=32)
    return x, y


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_ce_matches_numpy_formula_each_reduction(classes, reduction):
    x, y = classes
    result = losscli.compute("ce", x, y, reduction=reduction, dtype="float64")
    np.testing.assert_allclose(values(result), ref.cross_entropy(x, y, reduction=reduction))


def test_ce_matches_sklearn_log_loss(classes):
    x, y = classes
    probs = np.exp(ref.log_softmax(x))
    expected = log_loss(y, probs, labels=range(6))
    assert losscli.compute("ce", x, y, dtype="float64").value == pytest.approx(expected, rel=1e-9)


def test_ce_gradient_is_softmax_minus_one_hot_over_n(classes):
    x, y = classes
    result = losscli.compute("ce", x, y, dtype="float64")
    np.testing.assert_allclose(result.gradients["predictions"], ref.cross_entropy_grad(x, y))
    summary = result.to_dict()["gradient"]["predictions"]
    expected = ref.cross_entropy_grad(x, y)
    assert summary["shape"] == [32, 6]
    assert summary["norm"] == pytest.approx(np.linalg.norm(expected))
    assert summary["min"] == pytest.approx(expected.min())
    assert summary["max"] == pytest.approx(expected.max())
    assert summary["mean"] == pytest.approx(0.0, abs=1e-12)


def test_ce_sum_gradient_is_n_times_mean_gradient(classes):
    x, y = classes
    mean = losscli.compute("ce", x, y, dtype="float64").gradients["predictions"]
    total = losscli.compute("ce", x, y, reduction="sum", dtype="float64").gradients["predictions"]
    none = losscli.compute("ce", x, y, reduction="none", dtype="float64").gradients["predictions"]
    np.testing.assert_allclose(total, mean * len(x))
    np.testing.assert_allclose(none, total)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_ce_weight_ignore_index_and_smoothing(classes, reduction):
    x, y = classes
    y = y.copy()
    y[[1, 5, 9]] = -1
    weight = [1.0, 2.0, 0.5, 1.5, 3.0, 0.25]
    result = losscli.compute(
        "ce",
        x,
        y,
        weight=weight,
        ignore_index=-1,
        label_smoothing=0.2,
        reduction=reduction,
        dtype="float64",
    )
    expected = ref.cross_entropy(x, y, weight, -1, 0.2, reduction)
    np.testing.assert_allclose(values(result), expected)


def test_ce_ignored_rows_get_no_gradient(classes):
    x, y = classes
    y = y.copy()
    y[:4] = -100
    grad = losscli.compute("ce", x, y).gradients["predictions"]
    assert np.all(grad[:4] == 0)
    assert np.abs(grad[4:]).sum() > 0


def test_ce_weight_from_file_equals_weight_list(classes, files):
    x, y = classes
    weight = [1, 2, 3, 4, 5, 6]
    path = files.csv("weights.csv", weight)
    a = losscli.compute("ce", x, y, weight=str(path)).value
    b = losscli.compute("ce", x, y, weight="1,2,3,4,5,6").value
    c = ref.cross_entropy(x, y, weight)
    assert a == b
    assert a == pytest.approx(c, rel=1e-6)


@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_ce_probability_targets(classes, rng, smoothing):
    x, _ = classes
    p = rng.dirichlet(np.ones(6), size=len(x))
    weight = np.linspace(0.5, 2.0, 6)
    result = losscli.compute("ce", x, p, weight=weight, label_smoothing=smoothing, dtype="float64")
    assert result.targets_kind == "class probabilities"
    assert result.value == pytest.approx(ref.cross_entropy_probs(x, p, weight, smoothing))
    smoothed = (p * (1 - smoothing) + smoothing / 6) * weight
    softmax = np.exp(ref.log_softmax(x))
    expected = (softmax * smoothed.sum(1, keepdims=True) - smoothed) / len(x)
    np.testing.assert_allclose(result.gradients["predictions"], expected)


def test_ce_k_dimensional_inputs(rng):
    x = rng.normal(size=(3, 4, 5, 2))
    y = rng.integers(0, 4, size=(3, 5, 2))
    for reduction in REDUCTIONS:
        result = losscli.compute("ce", x, y, reduction=reduction, dtype="float64")
        np.testing.assert_allclose(values(result), ref.cross_entropy(x, y, reduction=reduction))
    assert losscli.compute("ce", x, y, reduction="none").value.shape == (3, 5, 2)


def test_ce_integral_float_labels_and_names(classes):
    x, y = classes
    as_float = losscli.compute("ce", x, y.astype(float)).value
    names = np.array(["abcdef"[i] for i in y])
    as_names = losscli.compute("ce", x, names, classes=list("abcdef")).value
    assert as_float == as_names == losscli.compute("ce", x, y).value


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nll_matches_formula(classes, reduction):
    x, y = classes
    logp = ref.log_softmax(x)
    weight = np.arange(1, 7, dtype=float)
    y = y.copy()
    y[0] = -100
    result = losscli.compute("nll", logp, y, weight=weight, reduction=reduction, dtype="float64")
    np.testing.assert_allclose(values(result), ref.nll(logp, y, weight, reduction=reduction))


def test_nll_of_log_softmax_equals_ce(classes):
    x, y = classes
    ce = losscli.compute("ce", x, y, dtype="float64")
    nll = losscli.compute("nll", ref.log_softmax(x), y, dtype="float64")
    assert nll.value == pytest.approx(ce.value)


def test_nll_gradient_is_minus_one_hot_over_n(classes):
    x, y = classes
    grad = losscli.compute("nll", ref.log_softmax(x), y, dtype="float64").gradients["predictions"]
    np.testing.assert_allclose(grad, -np.eye(6)[y] / len(y))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("loss", ["mse", "l1"])
def test_regression_losses_match_formula(rng, loss, reduction):
    x, y = rng.normal(size=(20, 3)), rng.normal(size=(20, 3))
    result = losscli.compute(loss, x, y, reduction=reduction, dtype="float64")
    np.testing.assert_allclose(values(result), getattr(ref, loss)(x, y, reduction))


def test_mse_and_l1_match_sklearn(rng):
    x, y = rng.normal(size=(50, 2)), rng.normal(size=(50, 2))
    assert losscli.compute("mse", x, y, dtype="float64").value == pytest.approx(
        mean_squared_error(y, x)
    )
    assert losscli.compute("mae", x, y, dtype="float64").value == pytest.approx(
        mean_absolute_error(y, x)
    )


def test_mse_gradients_are_two_diff_over_n_for_both_inputs(rng):
    x, y = rng.normal(size=(10, 4)), rng.normal(size=(10, 4))
    result = losscli.compute("mse", x, y, dtype="float64")
    np.testing.assert_allclose(result.gradients["predictions"], 2 * (x - y) / x.size)
    np.testing.assert_allclose(result.gradients["targets"], -2 * (x - y) / x.size)


def test_l1_gradient_is_sign_over_n(rng):
    x, y = rng.normal(size=(10, 4)), rng.normal(size=(10, 4))
    grad = losscli.compute("l1", x, y, dtype="float64").gradients["predictions"]
    np.testing.assert_allclose(grad, np.sign(x - y) / x.size)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_matches_formula(rng, reduction):
    p = rng.uniform(0.01, 0.99, size=(16, 3))
    y = rng.integers(0, 2, size=(16, 3)).astype(float)
    weight = [0.5, 1.0, 2.0]
    result = losscli.compute("bce", p, y, weight=weight, reduction=reduction, dtype="float64")
    np.testing.assert_allclose(values(result), ref.bce(p, y, weight, reduction))


def test_bce_matches_sklearn_log_loss_and_gradient(rng):
    p = rng.uniform(0.05, 0.95, size=40)
    y = rng.integers(0, 2, size=40).astype(float)
    result = losscli.compute("bce", p, y, dtype="float64")
    assert result.value == pytest.approx(log_loss(y, p))
    np.testing.assert_allclose(result.gradients["predictions"], (p - y) / (p * (1 - p)) / 40)


def test_bce_per_row_weight_for_1d_inputs(rng):
    p = rng.uniform(0.05, 0.95, size=6)
    y = rng.integers(0, 2, size=6).astype(float)
    w = np.arange(1, 7, dtype=float)
    result = losscli.compute("bce", p, y, weight=w, dtype="float64")
    assert result.value == pytest.approx(ref.bce(p, y, w))


def test_bce_clamps_log_at_minus_100_and_warns():
    result = losscli.compute("bce", [0.0, 1.0], [1.0, 0.0], dtype="float64")
    assert result.value == pytest.approx(100.0)
    assert any("exactly 0 or 1" in w for w in result.warnings)


@pytest.mark.parametrize("loss", ["ce", "nll", "mse", "l1", "bce"])
def test_chunked_computation_equals_one_chunk(rng, loss):
    x = rng.normal(size=(101, 4))
    if loss == "ce":
        y = rng.integers(0, 4, size=101)
        y[::7] = -100
        options = {"weight": "1,2,3,4", "ignore_index": -100, "label_smoothing": 0.1}
    elif loss == "nll":
        x, y = ref.log_softmax(x), rng.integers(0, 4, size=101)
        options = {"weight": "1,2,3,4", "ignore_index": -100}
    elif loss == "bce":
        x, y = rng.uniform(0.01, 0.99, size=(101, 4)), rng.integers(0, 2, size=(101, 4)) * 1.0
        options = {"weight": "1,0.5,2,1"}
    else:
        y = rng.normal(size=(101, 4))
        options = {}
    spec = get_spec(loss)
    for reduction in REDUCTIONS:
        inputs = {"predictions": InputArray("x", x), "targets": InputArray("y", y)}
        prepared = spec.prepare(inputs, {**spec.options, **options}, Context(reduction))
        whole = engine.run(spec, prepared, reduction=reduction, dtype="float64")
        chunked = engine.run(spec, prepared, reduction=reduction, dtype="float64", chunk_elements=9)
        np.testing.assert_allclose(np.asarray(chunked.value), np.asarray(whole.value))
        for name, grad in whole.gradients.items():
            np.testing.assert_allclose(chunked.gradients[name], grad, atol=1e-15)


def test_result_to_dict_has_exactly_the_spec_keys(classes):
    x, y = classes
    data = losscli.compute("ce", x, y).to_dict()
    assert list(data) == [
        "loss",
        "torch",
        "value",
        "reduction",
        "options",
        "device",
        "dtype",
        "inputs",
        "gradient",
        "warnings",
        "gate",
        "timing",
    ]
    assert data["gate"] is None
    assert data["options"] == {"weight": None, "ignore_index": -100, "label_smoothing": 0.0}
    assert set(data["timing"]) == {"read_s", "compute_s"}


def test_no_grad_gives_null_gradient(classes):
    x, y = classes
    result = losscli.compute("ce", x, y, grad=False)
    assert result.gradients is None
    assert result.to_dict()["gradient"] is None


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_each_dtype_is_close_to_float64(classes, dtype):
    x, y = classes
    result = losscli.compute("ce", x, y, dtype=dtype)
    assert result.to_dict()["dtype"] == dtype
    assert result.value == pytest.approx(ref.cross_entropy(x, y), rel=2e-2)


def test_api_refuses_unknown_option_and_loss(classes):
    x, y = classes
    with pytest.raises(LossCliError, match="no option"):
        losscli.compute("ce", x, y, smoothing=0.1)
    with pytest.raises(LossCliError, match="unknown loss"):
        losscli.compute("nope", x, y)
    with pytest.raises(LossCliError, match="takes 2 inputs"):
        losscli.compute("mse", x)


def test_importing_losscli_and_its_cli_does_not_import_torch():
    code = (
        "import sys, losscli, losscli.cli, losscli.meta\n"
        "print('torch' in sys.modules, 'numpy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
