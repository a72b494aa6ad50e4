"""CUDA: results equal the CPU's, and labels are validated on the CPU before the GPU sees them.
Skipped cleanly where no CUDA device exists."""

from __future__ import annotations

import numpy as np
import pytest

import losscli
from tests import reference as ref
from tests.conftest import SAMPLE, assert_usage_error, run_cli, torch_cuda_available

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch_cuda_available(), reason="no CUDA device"),
]


@pytest.mark.parametrize("loss", ["ce", "nll", "mse", "l1", "bce"])
def test_cuda_equals_cpu(loss, rng):
    x = rng.normal(size=(64, 5))
    if loss == "ce":
        y = rng.integers(0, 5, size=64)
    elif loss == "nll":
        x, y = ref.log_softmax(x), rng.integers(0, 5, size=64)
    elif loss == "bce":
        x, y = rng.uniform(0.05, 0.95, size=(64, 5)), rng.integers(0, 2, size=(64, 5)) * 1.0
    else:
        y = rng.normal(size=(64, 5))
    cpu = losscli.compute(loss, x, y, dtype="float64")
    gpu = losscli.compute(loss, x, y, dtype="float64", device="cuda")
    assert gpu.device.startswith("cuda")
    assert gpu.value == pytest.approx(cpu.value, rel=1e-10)
    np.testing.assert_allclose(gpu.gradients["predictions"], cpu.gradients["predictions"])


def test_bad_label_on_cuda_is_a_clear_error_not_a_device_assert(files):
    labels = files.text("y.csv", "0\n1\n9\n")
    logits = files.csv("x.csv", np.zeros((3, 4)))
    assert_usage_error(run_cli("ce", logits, labels, "--device", "cuda"), "class index 9")
    again = run_cli("ce", SAMPLE / "logits.csv", SAMPLE / "labels.csv", "--device", "cuda")
    assert again.exit_code == 0


def test_auto_picks_cuda():
    out = run_cli("ce", SAMPLE / "logits.csv", SAMPLE / "labels.csv", "-d", "auto", "-f", "json")
    assert '"device": "cuda:0"' in out.stdout
