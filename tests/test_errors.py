"""Every bad input of SPEC section 5: exit 2, one or two lines naming what is wrong, no traceback,
nothing on stdout and no file written. Also exit codes 1, 70 and 130, and a closed stdout."""

from __future__ import annotations

import json
import math
import os
import pickle
import pty
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from losscli import plan
from tests.conftest import (
    ROOT,
    SAMPLE,
    assert_usage_error,
    run_cli,
    run_process,
    torch_cuda_available,
    value_of,
)

LOGITS = str(SAMPLE / "logits.csv")
LABELS = str(SAMPLE / "labels.csv")


def test_missing_file_names_path_and_os_reason(tmp_path):
    missing = tmp_path / "nope.csv"
    assert_usage_error(run_cli("ce", missing, LABELS), str(missing), "No such file or directory")


def test_an_empty_directory_as_input_names_it(tmp_path):
    """A folder is a sharded input (SPEC section 9); one without data files is refused."""
    assert_usage_error(run_cli("ce", tmp_path, LABELS), str(tmp_path), "holds no data files")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(files):
    path = files.text("secret.csv", "1,2\n")
    path.chmod(0)
    assert_usage_error(run_cli("ce", path, LABELS), str(path), "Permission denied")


def test_empty_input_and_header_only(files):
    empty = files.text("empty.csv", "")
    header = files.text("header.csv", "a,b,c\n")
    assert_usage_error(run_cli("ce", empty, LABELS), str(empty), "no data rows")
    assert_usage_error(run_cli("ce", header, LABELS), str(header), "no data rows")


def test_non_numeric_cell_names_file_line_column_and_text(files):
    path = files.text("bad.csv", "1,2\n3,oops\n")
    assert_usage_error(run_cli("mse", path, path), str(path), "line 2, column 2", "'oops'")


def test_empty_cell_is_not_read_as_nan(files):
    path = files.text("hole.csv", "1,2\n3,\n")
    assert_usage_error(run_cli("mse", path, path), "line 2, column 2", "empty cell")


def test_ragged_row_names_line_and_column_counts(files):
    path = files.text("ragged.csv", "1,2,3\n4,5\n")
    assert_usage_error(
        run_cli("mse", path, path), str(path), "line 2", "found 2 columns, expected 3"
    )


def test_corrupt_and_truncated_array_files(files, rng):
    npy = files.npy("x.npy", rng.normal(size=(50, 4)))
    npy.write_bytes(npy.read_bytes()[:150])
    assert_usage_error(run_cli("mse", npy, npy), str(npy), "not a valid NPY file")
    npz = files.text("x.npz", b"PK\x03\x04garbage")
    assert_usage_error(run_cli("mse", npz, npz), str(npz), "not a valid NPZ file")
    parquet = files.text("x.parquet", b"PAR1 not really")
    assert_usage_error(run_cli("mse", parquet, parquet), str(parquet), "not a valid Parquet file")


def test_pickled_object_array_is_refused_without_unpickling(files, tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.npy"
    np.save(path, np.array([_Boom(str(marker))], dtype=object), allow_pickle=True)
    assert_usage_error(run_cli("mse", path, path), str(path), "not a safe NPY file")
    assert not marker.exists()
    npz = tmp_path / "evil.npz"
    np.savez(npz, x=np.array([{"a": 1}], dtype=object))
    assert_usage_error(run_cli("mse", npz, npz), "not a safe NPZ file")


class _Boom:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_npz_with_several_arrays_and_no_key_lists_keys(files):
    path = files.npz("two.npz", logits=np.ones((2, 2)), labels=np.zeros(2))
    assert_usage_error(run_cli("mse", path, path), "logits", "labels", ":KEY")


def test_shape_mismatch_names_both_shapes_and_accepted(files):
    a = files.csv("a.csv", np.ones((4, 3)))
    b = files.csv("b.csv", np.ones((4, 2)))
    assert_usage_error(run_cli("mse", a, b), "[4, 3]", "[4, 2]", "same shape")
    labels = files.csv("l.csv", np.zeros(5))
    assert_usage_error(run_cli("ce", a, labels), "[4, 3]", "[5]", "(N,C)")


def test_n_by_1_against_n_is_treated_as_one_shape_with_warning(files, rng):
    a = files.npy("a.npy", rng.normal(size=(6, 1)))
    b = files.npy("b.npy", rng.normal(size=6))
    out = run_cli("mse", a, b, "-f", "value")
    assert out.exit_code == 0
    assert "treated as [6, 1]" in out.stderr
    expected = np.mean((np.load(a)[:, 0] - np.load(b)) ** 2)
    assert float(out.stdout) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    ("labels", "fragments"),
    [
        ("0\n1\n7\n", ["row 3 (line 3)", "class index 7", "0..4"]),
        ("0\n-2\n1\n", ["row 2 (line 2)", "class index -2", "ignore index -100"]),
        ("0\n1.5\n1\n", ["row 2 (line 2)", "1.5", "not a class index"]),
    ],
)
def test_bad_class_index_names_file_row_value_and_range(files, labels, fragments):
    logits = files.csv("x.csv", np.zeros((3, 5)))
    path = files.text("y.csv", labels)
    assert_usage_error(run_cli("ce", logits, path), str(path), *fragments)


def test_bad_class_index_in_npy_is_refused(files):
    logits = files.npy("x.npy", np.zeros((3, 4), dtype=np.float32))
    labels = files.npy("y.npy", np.array([0, 4, 1]))
    assert_usage_error(run_cli("nll", logits, labels), "row 2", "class index 4", "0..3")


def test_unknown_class_name_lists_known_classes(files):
    labels = files.text("names.csv", "cat\nemu\n")
    logits = files.text("scores.csv", "cat,dog,bird\n1,2,3\n4,5,6\n")
    assert_usage_error(run_cli("ce", logits, labels), "'emu'", "'cat', 'dog', 'bird'")
    plain = files.csv("plain.csv", np.ones((2, 3)))
    assert_usage_error(run_cli("ce", plain, labels), "no classes are known", "--classes")


def test_class_names_through_classes_option(files):
    labels = files.text("names.csv", "b\na\nc\n")
    logits = files.csv("x.csv", np.eye(3))
    by_name = run_cli("ce", logits, labels, "--classes", "a,b,c", "-f", "value")
    by_index = run_cli("ce", logits, files.text("i.csv", "1\n0\n2\n"), "-f", "value")
    assert by_name.exit_code == 0, by_name.stderr
    assert by_name.stdout == by_index.stdout


def test_bce_out_of_range_suggests_bce_logits(files):
    preds = files.text("p.csv", "0.5\n1.7\n")
    targets = files.text("y.csv", "1\n0\n")
    assert_usage_error(run_cli("bce", preds, targets), "row 2", "1.7", "[0, 1]", "bce-logits")
    bad_targets = files.text("y2.csv", "1\n2\n")
    good = files.text("p2.csv", "0.5\n0.5\n")
    assert_usage_error(run_cli("bce", good, bad_targets), "row 2", "target value 2.0")


def test_nan_and_inf_are_located_and_counted_when_let_through(files):
    preds = files.text("p.csv", "1,2\nnan,3\n4,inf\n")
    targets = files.text("y.csv", "1,2\n3,4\n5,6\n")
    out = run_cli("mse", preds, targets)
    assert_usage_error(out, "NaN/inf value(s), first at", "row 2 (line 2, column 1)", "--allow")
    allowed = run_cli("mse", preds, targets, "--allow-nonfinite", "-f", "json")
    assert allowed.exit_code == 0
    assert "2 NaN/inf value(s), first at" in allowed.stderr
    assert "let through by --allow-nonfinite" in allowed.stderr
    # Counted over every block of rows, the first position kept.
    blocks = run_cli("mse", preds, targets, "--allow-nonfinite", "--block-rows", "1", "-f", "json")
    assert blocks.stderr == allowed.stderr
    assert '"value": null' in allowed.stdout
    assert "NaN or inf values are written as null" in allowed.stdout


def test_weight_length_must_match_classes():
    out = run_cli("ce", LOGITS, LABELS, "--weight", "1,2,3")
    assert_usage_error(out, "--weight has 3 entries", "5 classes")


def test_two_inputs_from_stdin_are_refused():
    assert_usage_error(run_cli("mse", "-", "-", input="1\n"), "only one input", "stdin")


def test_dash_while_stdin_is_a_terminal():
    main, secondary = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "losscli", "ce", "-", LABELS],
            stdin=secondary,
            capture_output=True,
            cwd=ROOT,
            timeout=60,
        )
    finally:
        os.close(main)
        os.close(secondary)
    assert done.returncode == 2
    assert b"stdin is a terminal" in done.stderr
    assert done.stdout == b""


@pytest.mark.parametrize(
    ("device", "fragment"),
    [("cuda", "not available"), ("cuda:7", "cuda:7"), ("tpu", "not a device name")],
)
def test_unavailable_device_names_what_the_build_has(device, fragment):
    import torch

    if torch.cuda.is_available() and device == "cuda":
        pytest.skip("this machine has CUDA")
    out = run_cli("ce", LOGITS, LABELS, "--device", device)
    assert_usage_error(out, fragment, "this torch build")


def test_device_from_environment_variable(monkeypatch):
    monkeypatch.setenv("LOSSCLI_DEVICE", "tpu")
    assert_usage_error(run_cli("ce", LOGITS, LABELS), "'tpu'")


def test_grad_out_refused_before_any_computation(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("inputs were read")

    monkeypatch.setattr(plan, "read_inputs", fail)
    assert_usage_error(run_cli("ce", LOGITS, LABELS, "--grad-out", LOGITS), "a file this run reads")
    missing = tmp_path / "no" / "such" / "g.npy"
    assert_usage_error(run_cli("ce", LOGITS, LABELS, "--grad-out", missing), "does not exist")
    assert_usage_error(
        run_cli("ce", LOGITS, LABELS, "--grad-out", tmp_path / "g.xls"), "unknown extension"
    )
    assert_usage_error(
        run_cli("ce", LOGITS, LABELS, "--no-grad", "--grad-out", tmp_path / "g.npy"), "--no-grad"
    )


def test_no_gradient_file_after_bad_input(files, tmp_path):
    labels = files.text("y.csv", "0\n9\n")
    logits = files.csv("x.csv", np.zeros((2, 3)))
    out_path = tmp_path / "g.npy"
    assert_usage_error(run_cli("ce", logits, labels, "--grad-out", out_path), "class index 9")
    assert not out_path.exists()
    assert list(tmp_path.glob("*.tmp")) == []


def test_unknown_column_names_available_columns():
    out = run_cli("mse", SAMPLE / "table.csv", "--pred-cols", "yhat", "--target-cols", "y")
    assert_usage_error(out, "'yhat'", "'y', 'y_hat'")


@pytest.mark.parametrize("value", ["1.5", "-0.1"])
def test_label_smoothing_outside_unit_interval(value):
    out = run_cli("ce", LOGITS, LABELS, "--label-smoothing", value)
    assert_usage_error(out, "--label-smoothing", value, "[0.0, 1.0]")


def test_typer_rejected_option_is_one_line_exit_2():
    for args in (["--reduction", "median"], ["--limit", "x"], ["--no-such-option"]):
        done = run_process("ce", LOGITS, LABELS, *args)
        assert done.returncode == 2
        assert done.stdout == b""
        lines = done.stderr.decode().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("losscli: error:"), lines
        assert "losscli ce --help" in lines[0]


def test_wrong_number_of_inputs():
    assert_usage_error(run_cli("ce", LOGITS), "takes 2 input(s)")


def test_internal_error_is_one_line_exit_70_and_debug_shows_traceback(monkeypatch):
    from losscli import engine

    def broken(*args, **kwargs):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(engine.BlockRun, "add", broken)
    out = run_cli("ce", LOGITS, LABELS, internal_ok=True)
    assert out.exit_code == 70
    assert out.stdout == ""
    assert "internal error" in out.stderr and "--debug" in out.stderr
    assert "Traceback" not in out.stderr
    debug = run_cli("ce", LOGITS, LABELS, "--debug", internal_ok=True)
    assert debug.exit_code == 70
    assert "Traceback" in debug.stderr and "ZeroDivisionError: boom" in debug.stderr


def test_interrupt_exits_130_without_traceback(monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(plan, "read_inputs", interrupted)
    out = run_cli("ce", LOGITS, LABELS)
    assert out.exit_code == 130
    assert "Traceback" not in out.stderr
    assert out.stdout == ""


def test_fail_above_and_below_exit_1_and_still_print():
    value = float(run_cli("ce", LOGITS, LABELS, "-f", "value").stdout)
    above = run_cli("ce", LOGITS, LABELS, "-f", "value", "--fail-above", str(value - 0.1))
    assert above.exit_code == 1
    assert float(above.stdout) == value
    assert run_cli("ce", LOGITS, LABELS, "--fail-above", str(value + 0.1)).exit_code == 0
    assert run_cli("ce", LOGITS, LABELS, "--fail-below", str(value + 0.1)).exit_code == 1
    assert run_cli("ce", LOGITS, LABELS, "--fail-below", str(value - 0.1)).exit_code == 0


@pytest.mark.parametrize("output", ["value", "table", "json"])
def test_closed_stdout_ends_quietly(tmp_path, rng, output):
    preds = tmp_path / "p.npy"
    np.save(preds, rng.normal(size=(20000, 4)).astype(np.float32))
    extra = "--per-sample --steps --limit 2000" if output == "table" else ""
    command = (
        f"{sys.executable} -m losscli mse {preds} {preds} -r none -f {output} {extra}"
        " | head -c 10; exit ${PIPESTATUS[0]}"
    )
    done = subprocess.run(["bash", "-c", command], capture_output=True, cwd=ROOT, timeout=120)
    assert len(done.stdout) == 10
    assert done.stderr == b""
    assert done.returncode == 0


def test_pickle_module_is_not_needed_for_safe_files():
    assert pickle  # the pickled fixture above is built with it; reading never unpickles


def test_real_process_bad_input_has_no_traceback(files):
    bad = files.text("bad.csv", "1,x\n")
    done = run_process("mse", bad, bad)
    assert done.returncode == 2
    assert done.stdout == b""
    assert b"Traceback" not in done.stderr


# ------------------------------------------------------------------ each loss's checks


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["soft-margin", "scores.csv", "bce_targets.csv"], ["shapes do not match"]),
        (["hinge-embedding", "distances.csv", "scores.csv"], ["is not +1 or -1", "row 1"]),
        (["margin-ranking", "rank1.csv", "rank2.csv", "scores.csv"], ["is not +1 or -1"]),
        (["cosine-embedding", "emb1.csv", "emb2.csv", "signs.csv"], ["(N,D) with (N)"]),
        (
            ["cosine-embedding", "emb1.csv", "emb2.csv", "pair_y.csv", "--margin", "2"],
            ["--margin 2.0", "[-1.0, 1.0]"],
        ),
        (
            ["triplet-margin", "emb1.csv", "emb2.csv", "emb3.csv", "--margin", "0"],
            ["--margin 0.0", "> 0.0"],
        ),
        (["triplet-margin", "emb1.csv", "emb2.csv", "emb3.csv", "--eps", "-1"], ["--eps -1.0"]),
        (["triplet-margin", "emb1.csv", "emb2.csv", "bce_logits.csv"], ["[8, 5]", "[10, 4]"]),
        (["multi-margin", "logits.csv", "labels.csv", "--p", "3"], ["--p 3", "1 or 2"]),
        (["multi-margin", "logits.csv", "ctc_targets.csv"], ["shapes do not match"]),
        (
            ["multi-margin", "logits.csv", "labels.csv", "--weight", "1,2"],
            ["2 entries", "5 classes"],
        ),
        (["multilabel-margin", "bce_logits.csv", "bce_probs.csv"], ["not a class index"]),
        (["multilabel-margin", "logits.csv", "ml_labels.csv"], ["[10, 5]", "[10, 4]"]),
        (["multilabel-soft-margin", "bce_logits.csv", "counts.csv"], ["shapes do not match"]),
        (["multilabel-soft-margin", "bce_logits.csv", "y_true.csv"], ["shapes do not match"]),
        (["bce-logits", "bce_logits.csv", "bce_logits.csv"], ["outside [0, 1]"]),
        (
            ["bce-logits", "bce_logits.csv", "bce_targets.csv", "--pos-weight", "1,2,3"],
            ["--pos-weight has 3 entries"],
        ),
        (["huber", "y_pred.csv", "y_true.csv", "--delta", "0"], ["--delta 0.0", "> 0.0"]),
        (["smooth-l1", "y_pred.csv", "y_true.csv", "--beta", "-1"], ["--beta -1.0"]),
        (["poisson-nll", "poisson_log_rates.csv", "y_true.csv"], ["counts (>= 0)"]),
        (["poisson-nll", "y_true.csv", "counts.csv", "--no-log-input"], ["rates (>= 0)"]),
        (["poisson-nll", "poisson_log_rates.csv", "counts.csv", "--eps", "-1"], ["--eps -1.0"]),
        (["gaussian-nll", "y_pred.csv", "y_true.csv", "y_true.csv"], ["var value", "> 0"]),
        (["gaussian-nll", "y_pred.csv", "y_true.csv", "bce_probs.csv"], ["var must have"]),
        (["gaussian-nll", "y_pred.csv", "y_true.csv", "var.csv", "--eps", "-1"], ["--eps -1.0"]),
        (["kl-div", "log_probs.csv", "logits.csv"], ["target value", "--log-target"]),
        (["kl-div", "log_probs.csv", "labels.csv"], ["shapes do not match"]),
        (
            [
                "ctc",
                "logits.csv",
                "ctc_targets.csv",
                "ctc_input_lengths.csv",
                "ctc_target_lengths.csv",
            ],
            ["input length", "one per sample"],
        ),
        (
            [
                "ctc",
                "ctc_log_probs.npy",
                "ctc_targets.csv",
                "ctc_input_lengths.csv",
                "ctc_target_lengths.csv",
                "--blank",
                "5",
            ],
            ["--blank 5", "0..4"],
        ),
        (
            [
                "ctc",
                "ctc_log_probs.npy",
                "ctc_targets.csv",
                "ctc_target_lengths.csv",
                "ctc_input_lengths.csv",
            ],
            ["target length", "not an integer in 0..4"],
        ),
        (
            ["ctc", "ctc_log_probs.npy", "ctc_targets.csv", "labels.csv", "ctc_target_lengths.csv"],
            ["input length", "3 integer(s)"],
        ),
    ],
)
def test_bad_inputs_for_each_loss_are_clear_errors(args, fragments):
    argv = [args[0]] + [str(SAMPLE / a) if a.endswith((".csv", ".npy")) else a for a in args[1:]]
    assert_usage_error(run_cli(*argv), *fragments)


def test_ctc_blank_used_as_a_label_is_refused(files):
    targets = files.text("t.csv", "1,0\n2,1\n3,4\n")
    lengths = files.text("l.csv", "2\n2\n2\n")
    out = run_cli(
        "ctc", SAMPLE / "ctc_log_probs.npy", targets, SAMPLE / "ctc_input_lengths.csv", lengths
    )
    assert_usage_error(out, "row 1 (line 1, column 2)", "other than the blank 0")


def test_ctc_concatenated_lengths_must_add_up(files):
    targets = files.text("t.csv", "1\n2\n3\n")
    out = run_cli(
        "ctc",
        SAMPLE / "ctc_log_probs.npy",
        targets,
        SAMPLE / "ctc_input_lengths.csv",
        SAMPLE / "ctc_target_lengths.csv",
    )
    assert_usage_error(out, "hold 3 labels", "add up to 9")


@pytest.mark.parametrize(
    ("args", "warning"),
    [
        (["kl-div", "log_probs.csv", "target_probs.csv"], "batchmean"),
        (
            ["kl-div", "target_probs.csv", "target_probs.csv", "-r", "batchmean"],
            "not log-probabilities",
        ),
        (["bce-logits", "bce_probs.csv", "bce_targets.csv"], "look like probabilities"),
    ],
)
def test_guidance_warnings(args, warning):
    argv = [args[0]] + [str(SAMPLE / a) if a.endswith((".csv", ".npy")) else a for a in args[1:]]
    out = run_cli(*argv, "-f", "value")
    assert out.exit_code in (0, 2), out.stderr
    assert warning in out.stderr


def test_batchmean_is_refused_for_other_losses():
    out = run_cli("mse", SAMPLE / "y_pred.csv", SAMPLE / "y_true.csv", "-r", "batchmean")
    assert out.exit_code == 2


@pytest.mark.cuda
@pytest.mark.skipif(not torch_cuda_available(), reason="no CUDA device")
def test_bad_label_on_cuda_is_a_clear_error_not_a_device_assert(files):
    labels = files.text("y.csv", "0\n1\n9\n")
    logits = files.csv("x.csv", np.zeros((3, 4)))
    assert_usage_error(run_cli("ce", logits, labels, "--device", "cuda"), "class index 9")
    again = run_cli("ce", SAMPLE / "logits.csv", SAMPLE / "labels.csv", "--device", "cuda")
    assert again.exit_code == 0


# ------------------------------------------------------------ SPEC section 8: refusals


@pytest.mark.parametrize(
    ("values", "dtype", "fmt"),
    [
        ([1.0, 1e39], "float32", "csv"),
        ([1.0, 1e39], "float32", "npy"),
        ([1.0, 1e5], "float16", "csv"),
        ([1.0, 70000], "float16", "npy-int32"),
        ([1.0, 3.4e38], "bfloat16", "npy"),
    ],
)
def test_values_the_dtype_cannot_hold_are_refused_like_inf(tmp_path, values, dtype, fmt):
    if fmt == "csv":
        preds = tmp_path / "p.csv"
        preds.write_text("\n".join(map(repr, values)) + "\n")
    else:
        preds = tmp_path / "p.npy"
        np.save(preds, np.array(values, dtype=np.int32 if fmt == "npy-int32" else np.float64))
    targets = tmp_path / "t.csv"
    targets.write_text("1\n1\n")
    out = run_cli("mse", preds, targets, "--dtype", dtype)
    assert_usage_error(out, f"{dtype} cannot hold", "row 2", "--allow-nonfinite")
    allowed = run_cli("mse", preds, targets, "--dtype", dtype, "--allow-nonfinite", "-f", "json")
    assert allowed.exit_code == 0, allowed.stderr
    data = json.loads(allowed.stdout)
    assert data["value"] is None  # inf, written as null
    assert any("cannot hold" in w for w in data["warnings"])


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (
            [
                "hinge-embedding",
                "sample_data/distances.csv",
                "sample_data/signs.csv",
                "--margin",
                "nan",
            ],
            "--margin",
        ),
        (
            ["huber", "sample_data/y_pred.csv", "sample_data/y_true.csv", "--delta", "inf"],
            "--delta",
        ),
        (
            [
                "gaussian-nll",
                "sample_data/y_pred.csv",
                "sample_data/y_true.csv",
                "sample_data/var.csv",
                "--eps",
                "nan",
            ],
            "--eps",
        ),
        (["ce", str(LOGITS), str(LABELS), "--label-smoothing", "nan"], "--label-smoothing"),
        (["ce", str(LOGITS), str(LABELS), "--weight", "1,nan,1,1,1"], "--weight"),
        (["ce", str(LOGITS), str(LABELS), "--fail-above", "nan"], "--fail-above"),
        (["ce", str(LOGITS), str(LABELS), "--ignore-index", str(2**70)], "--ignore-index"),
        (["ce", str(LOGITS), str(LABELS), "--delimiter", "ab"], "--delimiter"),
        (
            [
                "ce",
                "sample_data/scores_named.csv",
                "sample_data/labels_named.csv",
                "--classes",
                "cat,cat,dog",
            ],
            "--classes",
        ),
        (["ce", str(LOGITS), f"{LABELS}:key"], ":key"),
        (
            [
                "ctc",
                "sample_data/ctc_log_probs.npy",
                "sample_data/ctc_targets.csv",
                "sample_data/ctc_input_lengths.csv",
                "sample_data/ctc_target_lengths.csv",
                "--blank",
                str(-(2**64)),
            ],
            "--blank",
        ),
    ],
)
def test_option_values_outside_their_domain_are_usage_errors(args, fragment):
    os.chdir(ROOT)
    assert_usage_error(run_cli(*args), fragment)


def test_corrupt_array_files_are_refused_without_allocating(tmp_path):
    huge = tmp_path / "huge.npy"
    header = {"descr": "<f8", "fortran_order": False, "shape": (10**11,)}
    with open(huge, "wb") as out:
        np.lib.format.write_array_header_1_0(out, header)
        out.write(b"\0" * 64)
    assert_usage_error(run_cli("mse", huge, huge), "not a valid NPY file", "promises")
    import zipfile

    odd = tmp_path / "odd.npz"
    with zipfile.ZipFile(odd, "w") as archive:
        archive.writestr("notes.txt", "hello")
        archive.writestr("x.npy", b"\x93NUMPY garbage")
    assert_usage_error(run_cli("mse", f"{odd}:notes.txt", f"{odd}:x"), "not an NPY array")
    assert_usage_error(run_cli("mse", f"{odd}:x", f"{odd}:x"), "not a valid NPZ file")


@pytest.mark.parametrize(
    ("labels", "ignore"),
    [
        (np.array([2**64 - 1, 1], dtype=np.uint64), "-1"),
        (np.array([2**64 - 1, 1], dtype=np.uint64), "-100"),
        (np.array([1e19, 1.0]), str(-(2**63))),
        (np.array([-(2.0**63), 1.0]), "-1"),
    ],
)
def test_labels_beyond_int64_are_out_of_range_not_wrapped(tmp_path, labels, ignore):
    np.save(tmp_path / "x.npy", np.array([[1.0, 2.0], [3.0, 5.0]]))
    np.save(tmp_path / "y.npy", labels)
    out = run_cli("ce", tmp_path / "x.npy", tmp_path / "y.npy", "--ignore-index", ignore)
    assert_usage_error(out, "row 1", "out of range")


@pytest.mark.parametrize(
    ("value", "dtype"), [(65519.9999, "float16"), (3.39617745e38, "bfloat16"), (3.5e38, "float32")]
)
def test_values_that_round_to_inf_through_float32_are_refused(tmp_path, value, dtype):
    np.save(tmp_path / "p.npy", np.array([value, 1.0]))
    np.save(tmp_path / "t.npy", np.array([0.0, 1.0]))
    assert_usage_error(
        run_cli("mse", tmp_path / "p.npy", tmp_path / "t.npy", "--dtype", dtype), "cannot hold"
    )


@pytest.mark.parametrize("label", ["\u0661", "1_0", "0x1"])
def test_class_labels_follow_the_number_syntax(tmp_path, label):
    preds = tmp_path / "x.csv"
    preds.write_text("cat,dog\n1,2\n3,4\n5,6\n")
    labels = tmp_path / "y.csv"
    labels.write_text(f"dog\ncat\n{label}\n")
    assert_usage_error(run_cli("ce", preds, labels), f"class name {label!r} is not a known class")


def test_lying_or_odd_array_files_are_clear_errors(tmp_path):
    import zipfile

    good = tmp_path / "t.npy"
    np.save(good, np.zeros((3, 2)))
    for shape in (b"(-1, 2)", b"(3, 2**60)", b"(3, 'x')"):
        bad = tmp_path / "bad.npy"
        bad.write_bytes(good.read_bytes().replace(b"(3, 2)", shape.ljust(6)))
        assert_usage_error(run_cli("mse", bad, good), "not a valid NPY file")
        done = run_process("mse", "-", good, input=bad.read_bytes())
        assert done.returncode == 2 and b"not a valid NPY file" in done.stderr
    colon = tmp_path / "colon.npz"
    np.savez(colon, **{"a:b": np.ones(3), "c": np.zeros(3)})
    assert value_of(run_cli("mse", f"{colon}:a:b", f"{colon}:c", "-f", "value")) == 1.0
    twice = tmp_path / "twice.npz"
    with zipfile.ZipFile(twice, "w") as archive, pytest.warns(UserWarning, match="Duplicate"):
        for fill in (1, 2):
            buffer = __import__("io").BytesIO()
            np.save(buffer, np.full(3, fill))
            archive.writestr("x.npy", buffer.getvalue())
    assert_usage_error(run_cli("mse", twice, twice), "two arrays named x")


def test_a_column_named_index_that_holds_text_is_data_not_a_crash(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("index,p,t\nr1,0.5,1\nr2,0.2,0\n")
    assert_usage_error(run_cli("mse", path, path), "found 'r1'")
    got = value_of(run_cli("mse", path, "--pred-cols", "p", "--target-cols", "t", "-f", "value"))
    assert got == pytest.approx(np.mean((np.array([0.5, 0.2]) - [1, 0]) ** 2))


@pytest.mark.parametrize(
    ("loss", "preds", "targets", "dtype"),
    [
        ("poisson-nll", "0.5\n0.2\n", "3\n100000\n", "float16"),
        ("soft-margin", "0.5\n0.2\n", "1\n1e39\n", "float32"),
        ("ce", "0.5,0.5\n0.2,0.8\n", "0.5,0.5\n1e39,0\n", "float32"),
    ],
)
def test_targets_computed_in_the_dtype_are_checked_too(tmp_path, loss, preds, targets, dtype):
    p, t = tmp_path / "p.csv", tmp_path / "t.csv"
    p.write_text(preds)
    t.write_text(targets)
    assert_usage_error(run_cli(loss, p, t, "--dtype", dtype), "cannot hold", "row 2")


def test_an_empty_axis_is_named_as_such(tmp_path):
    np.save(tmp_path / "e.npy", np.zeros((3, 0)))
    assert_usage_error(run_cli("mse", tmp_path / "e.npy", tmp_path / "e.npy"), "an empty axis")


MALFORMED_DASK = {
    "no port": "not-an-address",
    "a bare word": "foo",
    "a scheme and no port": "tcp://127.0.0.1",
    "an empty port": "127.0.0.1:",
    "port 0": "tcp://127.0.0.1:0",
    "port out of range": "127.0.0.1:65536",
    "port far out of range": "tcp://127.0.0.1:99999999999999999999",
    "a negative port": "127.0.0.1:-1",
    "a port that is not a number": "tcp://127.0.0.1:http",
    "non-ASCII digits": "127.0.0.1:\u0668\u0667",
    "an unknown scheme": "http://127.0.0.1:8786",
    "an upper-case scheme": "TCP://127.0.0.1:8786",
    "inproc": "inproc://127.0.0.1/1/1",
    "no host": "tcp://:8786",
    "a bad host": "tcp://a..b:8786",
    "an IPv4 address out of range": "tcp://999.999.999.999:8786",
    "an IPv4 address with three parts": "tcp://10.0.1:8786",
    "an unclosed IPv6 host": "tcp://[::1:8786",
    "a bad IPv6 host": "[zz]:8786",
    "IPv6 without a port": "[::1]",
    "a path": "tcp://127.0.0.1:8786/x",
    "empty": "",
    "spaces": "127.0.0.1 :8786",
    "local with a space": "local ",
    "a newline": "tcp://127.0.0.1:8786\nx",
    "a control character": "127.0.0.1:87\x1b86",
}


@pytest.mark.parametrize("address", list(MALFORMED_DASK.values()), ids=list(MALFORMED_DASK))
@pytest.mark.parametrize("given", ["option", "environment"])
def test_a_malformed_dask_address_is_a_usage_error_before_any_connection(
    tmp_path, monkeypatch, address, given
):
    """Checked before Dask is even imported: with distributed made unimportable the error is
    still the address's, naming the option or the variable, on one line."""
    np.save(tmp_path / "p.npy", np.zeros((3, 2)))
    np.save(tmp_path / "y.npy", np.array([0, 1, 0]))
    monkeypatch.setitem(sys.modules, "distributed", None)
    args = ["ce", tmp_path / "p.npy", tmp_path / "y.npy"]
    if given == "option":
        named = "--dask '"
        args += ["--dask", address]
    elif address == "":
        pytest.skip("an empty variable is an unset one (Click's rule): covered below")
    else:
        named = "LOSSCLI_DASK='"
        monkeypatch.setenv("LOSSCLI_DASK", address)
    out = run_cli(*args)
    assert_usage_error(out, named, "expected tcp://HOST:PORT")
    assert "pip install" not in out.stderr and "internal error" not in out.stderr
    assert "\x1b" not in out.stderr and (given == "option") == ("LOSSCLI_DASK" not in out.stderr)


def test_an_empty_dask_variable_is_unset_and_an_empty_option_is_refused(tmp_path, monkeypatch):
    np.save(tmp_path / "p.npy", np.zeros((3, 2)))
    np.save(tmp_path / "y.npy", np.array([0, 1, 0]))
    args = ["ce", tmp_path / "p.npy", tmp_path / "y.npy", "-f", "value"]
    monkeypatch.setenv("LOSSCLI_DASK", "")
    assert value_of(run_cli(*args)) == pytest.approx(np.log(2))
    assert_usage_error(run_cli(*args, "--dask", ""), "--dask ''", "no scheduler address")


@pytest.mark.parametrize(
    "address",
    ["local", "127.0.0.1:8786", "tcp://127.0.0.1:8786", "tcp://[::1]:1", "localhost:65535",
     "tls://scheduler.internal:8786", "ws://dask-scheduler_1:8786", "ucx://10.0.0.1:13337"],
)  # fmt: skip
def test_well_formed_dask_addresses_pass_the_check(address):
    from losscli.cluster import check_address

    check_address(address)  # only parsed: nothing connects


def test_a_malformed_dask_address_from_python_and_batch_is_a_usage_error(tmp_path):
    import losscli
    from losscli.errors import OptionError

    np.save(tmp_path / "p.npy", np.zeros((3, 2)))
    np.save(tmp_path / "y.npy", np.array([0, 1, 0]))
    with pytest.raises(OptionError, match="--dask 'foo': no port number"):
        losscli.compute_files("ce", tmp_path / "p.npy", tmp_path / "y.npy", dask="foo")
    job = {"loss": "ce", "inputs": [str(tmp_path / "p.npy"), str(tmp_path / "y.npy")],
           "options": {"dask": "127.0.0.1:0"}}  # fmt: skip
    out = run_cli("batch", "-", input=json.dumps(job) + "\n")
    assert out.exit_code == 2
    error = json.loads(out.stdout)["error"]
    assert error["exit"] == 2 and "port 0 is outside 1..65535" in error["message"]


# The checks of every value take a fast path (one sum, or a min and a max) where the data
# are clean, and fall back to the flags only where those say something may be wrong: the
# outcome is the flags' in every case, large finite values whose sum overflows included.
@settings(max_examples=80, deadline=None)
@given(
    dtype=st.sampled_from(["float16", "float32", "float64"]),
    size=st.integers(1, 300),
    seed=st.integers(0, 2**32 - 1),
    bad=st.sampled_from([None, math.nan, math.inf, -math.inf]),
    huge=st.booleans(),
)
def test_value_checks_refuse_exactly_the_bad_values(dtype, size, seed, bad, huge):
    from losscli.errors import InputError
    from losscli.io.common import InputArray
    from losscli.validate import Context, check_finite, in_unit_interval

    rng = np.random.default_rng(seed)
    top = float(np.finfo(dtype).max) if huge else 1.0
    array = (rng.uniform(-1, 1, size=(size, 2)) * top).astype(dtype)  # huge: the sum overflows
    where = (int(rng.integers(size)), int(rng.integers(2)))
    if bad is not None:
        array[where] = bad
    inp = InputArray("x.npy", array)
    if bad is None:
        check_finite("predictions", inp, Context())
    else:
        with pytest.raises(InputError, match="NaN/inf") as refused:
            check_finite("predictions", inp, Context())
        first = tuple(np.argwhere(~np.isfinite(array))[0])
        assert f"row {first[0] + 1}" in str(refused.value)
    unit = (np.abs(array.astype(np.float64)) / (2 * top)).astype(dtype) if bad is None else array
    if bad is None and seed % 3:  # just outside, at one place
        unit[where] = 1.01 if seed % 3 == 1 else -0.01
    outside = bool(((unit < 0) | (unit > 1)).any())
    if outside:
        with pytest.raises(InputError, match=r"outside \[0, 1\]"):
            in_unit_interval("targets", InputArray("y.npy", unit), "")
    else:
        in_unit_interval("targets", InputArray("y.npy", unit), "")


# The check of values a narrower --dtype rounds to inf answers from the min and max where
# they fit; the outcome is the element-by-element one (float32 first, then the dtype).
@settings(max_examples=80, deadline=None)
@given(
    compute=st.sampled_from(["float16", "bfloat16", "float32"]),
    given_dtype=st.sampled_from(["float64", "float32", "int64"]),
    seed=st.integers(0, 2**32 - 1),
    near=st.sampled_from([0.5, 0.999, 0.99999999, 1.0, 1.0000001, 2.0]),
    bad=st.sampled_from([None, math.nan, math.inf]),
)
def test_values_the_dtype_rounds_to_inf_are_refused_exactly(compute, given_dtype, seed, near, bad):
    import torch

    from losscli.errors import InputError
    from losscli.io.common import InputArray
    from losscli.validate import OVERFLOW_AT, Context, check_representable

    rng = np.random.default_rng(seed)
    limit = OVERFLOW_AT[compute]
    top = min(limit * near, float(np.finfo(np.float64).max))
    if given_dtype == "int64":
        top = min(top, 2.0**62)
    values = rng.uniform(-1, 1, size=(int(rng.integers(1, 50)), 3)) * top
    values[int(rng.integers(len(values))), int(rng.integers(3))] = top * (1 if seed % 2 else -1)
    with np.errstate(over="ignore"):
        array = values.astype(given_dtype)
    if bad is not None and given_dtype != "int64":
        array[0, 0] = bad
    # Independently: each finite value as the engine hands it to torch, then in the dtype.
    with np.errstate(over="ignore"):
        as_float32 = torch.from_numpy(array.astype(np.float32))
    became = torch.isinf(as_float32.to(getattr(torch, compute))).numpy()
    over = became & np.isfinite(array.astype(np.float64))
    inp = InputArray("x.npy", array)
    if over.any():
        with pytest.raises(InputError, match="cannot hold"):
            check_representable("predictions", inp, Context(dtype=compute))
    else:
        check_representable("predictions", inp, Context(dtype=compute))


def test_the_extremes_are_those_of_the_array_an_input_holds_now():
    from losscli.io.common import InputArray

    first = InputArray("x.npy", np.array([[1.0, -2.0], [3.0, 0.5]]))
    assert first.extremes() == (-2.0, 3.0)
    converted = first.with_array(np.array([[0.25, 7.0]], dtype=np.float32))
    assert converted.extremes() == (0.25, 7.0)
    assert np.isnan(InputArray("y", np.array([1.0, np.nan, 2.0])).extremes()).all()
    assert InputArray("e", np.empty((0, 3))).extremes() is None
    assert InputArray("s", np.array(["a", "b"])).extremes() is None


# What a later block holds never pre-empts what an earlier one holds, nor the refusals of
# the first block (the device, a view's option): the first problem in file order is said.
@pytest.mark.parametrize(
    "extra, said",
    [
        ([], "p.npy, row 4, index [3, 1]"),
        (["--device", "cuda:9"], "--device 'cuda:9' is not available"),
        (["--by-class"], "--by-class needs class-index targets"),
    ],
)
def test_an_error_of_a_later_block_comes_after_those_of_earlier_blocks(tmp_path, extra, said):
    predictions = np.random.default_rng(2).normal(size=(30, 3)).astype(np.float32)
    predictions[3, 1] = np.nan if not extra else predictions[3, 1]
    np.save(tmp_path / "p.npy", predictions)
    loss, targets = ("mse", np.zeros((4, 3))) if "--by-class" in extra else ("ce", [0, 1, 2, 0])
    np.save(tmp_path / "t.npy", np.asarray(targets))  # 4 rows: refused when the 3rd block is
    out = run_cli(loss, tmp_path / "p.npy", tmp_path / "t.npy", "--block-rows", "2", *extra)
    assert_usage_error(out, said)
    assert "different numbers of rows" not in out.stderr
