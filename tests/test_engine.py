"""The engine and the Result: dtypes, the JSON keys, no-grad, the API's refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

import losscli
from losscli.errors import LossCliError
from tests import reference as ref
from tests.conftest import (
    ROOT,
    SAMPLE,
    assert_usage_error,
    run_cli,
    value_of,
)

LOGITS = str(SAMPLE / "logits.csv")
LABELS = str(SAMPLE / "labels.csv")


def test_result_to_dict_has_exactly_the_spec_keys(classes):
    x, y = classes
    data = losscli.compute("ce", x, y).to_dict()
    assert list(data) == [
        "loss",
        "torch",
        "value",
        "stderr",
        "ci95",
        "perplexity",
        "bits",
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


# ------------------------------------------------------------ SPEC section 8 on the compute path


SHAPES = [(), (1,), (3,), (3, 1), (3, 4), (2, 3, 4), (0,), (3, 0), (0, 4)]


DTYPES = [
    np.float32,
    np.float16,
    np.int8,
    np.uint64,
    np.int64,
    np.bool_,
    np.longdouble,
    np.dtype(">f8"),
    np.dtype(">i4"),
    np.complex64,
    np.dtype("datetime64[s]"),
]


@pytest.mark.parametrize("loss", sorted(__import__("losscli.registry").registry.all_specs()))
def test_every_shape_and_dtype_is_computed_or_refused(tmp_path, loss):
    """Exit 0 or 2 for every array NumPy can hold; never 70, never a Python warning."""
    from losscli.registry import get_spec

    spec = get_spec(loss)
    rng = np.random.default_rng(0)
    cases = [(s, np.float32) for s in SHAPES] + [((3, 4), d) for d in DTYPES]
    for shape, dtype in cases:
        paths = []
        for i in range(len(spec.inputs)):
            values = rng.random(shape) * 2
            if np.dtype(dtype).kind == "M":
                values = (values * 1e9).astype(np.int64)
            array = np.asarray(values).astype(dtype)
            if len(shape) == 2 and i == 0:
                array = np.asfortranarray(array)
            path = tmp_path / f"{i}.npy"
            np.save(path, array)
            paths.append(path)
        out = run_cli(loss, *paths)
        assert out.exit_code in (0, 2), (shape, dtype, out.stderr)
        if out.exit_code == 2:
            assert_usage_error(out)


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.uint16, np.uint64, np.bool_, np.float16])
@pytest.mark.parametrize("loss", ["mse", "l1", "huber", "bce"])
def test_integer_and_boolean_arrays_are_valid_float_inputs(tmp_path, loss, dtype):
    rng = np.random.default_rng(1)
    preds = (rng.random((5, 2)) > 0.5).astype(dtype)
    targets = rng.random((5, 2))
    np.save(tmp_path / "p.npy", preds)
    np.save(tmp_path / "t.npy", targets)
    got = value_of(
        run_cli(loss, tmp_path / "p.npy", tmp_path / "t.npy", "-f", "value", "--dtype", "float64")
    )
    p = preds.astype(np.float64)
    diff = p - targets
    expected = {
        "mse": np.mean(diff**2),
        "l1": np.mean(np.abs(diff)),
        "huber": np.mean(np.where(np.abs(diff) < 1, 0.5 * diff**2, np.abs(diff) - 0.5)),
        "bce": np.mean(
            -(
                targets * np.maximum(np.log(np.where(p > 0, p, 1)), -100) * (p > 0)
                + targets * -100 * (p == 0)
                + (1 - targets) * (np.maximum(np.log(np.where(p < 1, 1 - p, 1)), -100) * (p < 1))
                + (1 - targets) * -100 * (p == 1)
            )
        ),
    }[loss]
    assert got == pytest.approx(expected, rel=1e-12)


def test_zero_dimensional_arrays_compute_as_torch(tmp_path):
    np.save(tmp_path / "p.npy", np.array(2.5))
    np.save(tmp_path / "t.npy", np.array(1.0))
    got = value_of(run_cli("mse", tmp_path / "p.npy", tmp_path / "t.npy", "-f", "value"))
    assert got == pytest.approx(2.25)
    assert_usage_error(run_cli("ce", tmp_path / "p.npy", tmp_path / "t.npy"), "predictions")


def test_block_sums_are_accumulated_in_float64(tmp_path):
    """1e8 + 999 ones: float32 sums drop the ones (the spacing of floats at 1e8 is 8)."""
    preds = np.ones(1000, dtype=np.float32)
    preds[0] = 1e8 + 1
    np.save(tmp_path / "p.npy", preds)
    np.save(tmp_path / "t.npy", np.ones(1000, dtype=np.float32))
    np.save(tmp_path / "q.npy", np.zeros(1000, dtype=np.float32))
    got = value_of(
        run_cli("l1", tmp_path / "p.npy", tmp_path / "q.npy", "-r", "sum", "-f", "value")
    )
    assert got == float(np.float32(1e8 + 1)) + 999


def test_nll_with_every_target_ignored_has_zero_gradient(tmp_path):
    logp = tmp_path / "lp.csv"
    logp.write_text("-0.5,-1.2\n-2.0,-0.1\n")
    labels = tmp_path / "y.csv"
    labels.write_text("-100\n-100\n")
    grad = tmp_path / "g.npy"
    out = run_cli("nll", logp, labels, "--grad-out", grad, "-f", "json")
    assert out.exit_code == 0, out.stderr
    assert json.loads(out.stdout)["value"] is None
    np.testing.assert_array_equal(np.load(grad), np.zeros((2, 2)))


def test_ctc_gradient_keeps_the_shape_of_two_dimensional_log_probs(tmp_path):
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(6, 4))
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    np.save(tmp_path / "lp.npy", log_probs)
    (tmp_path / "t.csv").write_text("1\n2\n")
    (tmp_path / "il.csv").write_text("6\n")
    (tmp_path / "tl.csv").write_text("2\n")
    grad = tmp_path / "g.npy"
    out = run_cli(
        "ctc",
        tmp_path / "lp.npy",
        tmp_path / "t.csv",
        tmp_path / "il.csv",
        tmp_path / "tl.csv",
        "--grad-out",
        grad,
    )
    assert out.exit_code == 0, out.stderr
    assert np.load(grad).shape == (6, 4)


def test_compute_files_reads_as_the_command_line_does(tmp_path):
    import losscli

    result = losscli.compute_files(
        "ce", str(LOGITS), str(LABELS), dtype="float64", reduction="sum", fail_above=1.0
    )
    x = np.loadtxt(LOGITS, delimiter=",")
    expected = ref.cross_entropy(x, np.loadtxt(LABELS).astype(int)) * len(x)
    assert result.value == pytest.approx(expected, rel=1e-12)
    assert result.gate["tripped"] is True


def test_python_api_refuses_empty_inputs_and_keeps_stderr_clean(capfd):
    import losscli
    from losscli.errors import LossCliError

    with pytest.raises(LossCliError, match="has no data"):
        losscli.compute("multilabel-margin", np.zeros((3, 0)), np.zeros((3, 0), dtype=int))
    x = np.log(np.full((2, 3), 1 / 3))
    losscli.compute("kl-div", x, np.full((2, 3), 1 / 3), reduction="mean")
    assert capfd.readouterr().err == ""


def test_a_mean_over_zero_weight_is_nan_as_in_torch(tmp_path):
    import torch

    x = np.array([[0.1, 2.0, -1.0], [1.0, 0.5, 0.3]])
    y = np.array([0, 0])
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    out = run_cli(
        "ce",
        tmp_path / "x.npy",
        tmp_path / "y.npy",
        "--weight",
        "0,1,1",
        "--label-smoothing",
        "0.5",
        "-f",
        "json",
        "--dtype",
        "float64",
    )
    expected = torch.nn.functional.cross_entropy(
        torch.tensor(x),
        torch.tensor(y),
        weight=torch.tensor([0.0, 1, 1], dtype=torch.float64),
        label_smoothing=0.5,
    ).item()
    assert out.exit_code == 0, out.stderr
    assert np.isnan(expected)
    assert json.loads(out.stdout)["value"] is None  # NaN, written as null
    assert "NaN or inf" in " ".join(json.loads(out.stdout)["warnings"])


def test_compute_files_reads_stdin_from_a_given_file(tmp_path):
    import io

    import losscli

    result = losscli.compute_files(
        "mse",
        "-",
        str(SAMPLE / "y_true.csv"),
        stdin=io.BytesIO((SAMPLE / "y_pred.csv").read_bytes()),
    )
    expected = losscli.compute_files("mse", str(SAMPLE / "y_pred.csv"), str(SAMPLE / "y_true.csv"))
    assert result.value == expected.value


def test_python_api_takes_paths_and_lists_and_refuses_odd_values(tmp_path):
    import pathlib

    import losscli
    from losscli.errors import OptionError

    table = SAMPLE / "table.csv"
    result = losscli.compute_files(
        "mse", pathlib.Path(table), pred_cols=["y_hat"], target_cols=["y"]
    )
    expected = losscli.compute_files("mse", str(table), pred_cols="y_hat", target_cols="y")
    assert result.value == expected.value
    for options in ({"ignore_index": 0.5}, {"ignore_index": True}, {"label_smoothing": "abc"}):
        with pytest.raises(OptionError):
            losscli.compute_files("ce", str(LOGITS), str(LABELS), **options)


@pytest.mark.parametrize("loss", sorted(__import__("losscli.registry").registry.all_specs()))
def test_a_0d_or_one_row_auxiliary_input_is_computed_or_refused(tmp_path, loss):
    """Each input after the first as a 0-d array or a single row, beside valid inputs (the
    loss's example, and its columns as 1-D inputs): exit 0 or 2 in whole and blocked reads
    and with the views, never 70."""
    import shlex

    from losscli.registry import get_spec

    spec = get_spec(loss)
    words = shlex.split(spec.example)[2:]
    count = len(spec.inputs)
    paths, options = [ROOT / w for w in words[:count]], words[count:]
    base = [np.load(p) if p.suffix == ".npy" else np.loadtxt(p, delimiter=",") for p in paths]
    for flat in (False, True):
        arrays = [a[:, 0] if flat and a.ndim == 2 else a for a in base]
        for position in range(1, count):
            for single in (np.asarray(arrays[position].flat[0]), arrays[position].flat[:1]):
                files = []
                for i, array in enumerate(arrays):
                    chosen = np.abs(single) + 0.1 if i == position and loss == "gaussian-nll" else (
                        single if i == position else array
                    )  # fmt: skip
                    np.save(tmp_path / f"{i}.npy", chosen)
                    files.append(tmp_path / f"{i}.npy")
                for extra in ([], ["--block-rows", "3", "--top", "2", "--hist", "-r", "sum"],
                              ["-r", "none", "--per-sample"]):  # fmt: skip
                    out = run_cli(loss, *files, *options, *extra)
                    assert out.exit_code in (0, 2), (position, single.shape, extra, out.stderr)
                    if out.exit_code == 2:
                        assert_usage_error(out)
