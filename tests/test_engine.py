"""The engine and the Result: dtypes, the JSON keys, no-grad, the API's refusals."""

from __future__ import annotations

import numpy as np
import pytest

import losscli
from losscli.errors import LossCliError
from tests import reference as ref


@pytest.fixture
def classes(rng):
    x = rng.normal(size=(32, 6)) * 2
    y = rng.integers(0, 6, size=32)
    return x, y


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


def test_batchmean_is_only_for_kl():
    with pytest.raises(LossCliError, match="batchmean"):
        losscli.compute("mse", np.ones(3), np.ones(3), reduction="batchmean")
