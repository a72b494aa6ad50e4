"""A state whose fields each pass the schema but contradict each other is refused (exit 2,
one line naming the field); the states of real runs of every loss and view still merge."""

from __future__ import annotations

import copy
import json
import os

import numpy as np
import pytest

from tests.conftest import assert_usage_error, run_cli


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> dict:
    """The state of a ce run over 12 rows, 3 classes, with calibration and every view."""
    root = tmp_path_factory.mktemp("real")
    rng = np.random.default_rng(5)
    np.save(root / "x.npy", rng.normal(size=(12, 3)))
    np.save(root / "y.npy", np.arange(12) % 3)
    out = run_cli("ce", root / "x.npy", root / "y.npy", "--top", "3", "--hist",
                  "--calibration", "5", "--emit-state", root / "s.json", "-f", "value")  # fmt: skip
    assert out.exit_code == 0, out.stderr
    return json.loads((root / "s.json").read_text())


def _at(*keys, value):
    def edit(state):
        for key in keys[:-1]:
            state = state[key]
        state[keys[-1]] = value

    return edit


def _first_nonzero_bin(state) -> int:
    return next(i for i, c in enumerate(state["calibration"]["count"]) if c)


CASES = {
    "denominator off the samples": (_at("denominator", value=7.0), "denominator"),
    "denominator 0 with samples": (_at("denominator", value=0.0), "denominator"),
    "denominator 1e308": (_at("denominator", value=1e308), "denominator"),
    "moments.count above count": (_at("moments", "count", value=13), "moments.count"),
    "per-class counts over count": (_at("per_class", "counts", value=[12, 1, 0]), "per_class"),
    "calibration bins over the rows": (
        lambda s: s["calibration"]["count"].__setitem__(-1, 1000),
        "calibration.count",
    ),
    "confidence outside its bin": (
        lambda s: (
            s["calibration"]["confidence_sum"].__setitem__(
                _first_nonzero_bin(s), 0.999 * s["calibration"]["count"][_first_nonzero_bin(s)]
            )
            if _first_nonzero_bin(s) < 4
            else s["calibration"]["confidence_sum"].__setitem__(4, 0.1)
        ),
        "calibration.confidence_sum",
    ),
    "correct above count": (
        lambda s: s["calibration"]["correct"].__setitem__(
            _first_nonzero_bin(s), s["calibration"]["count"][_first_nonzero_bin(s)] + 1
        ),
        "calibration.correct",
    ),
    "weight too short": (_at("options", "weight", value=[1.0, 2.0]), "options.weight"),
    "weight too long": (_at("options", "weight", value=[1.0] * 4), "options.weight"),
    "count 0": (_at("count", value=0), "count"),
    "count above the largest input": (_at("count", value=37), "count"),
    "rows not summing to the shape": (
        _at("inputs", "predictions", "rows", 0, "count", value=5),
        "inputs.predictions.rows",
    ),
    "empty rows of a file": (_at("inputs", "targets", "rows", value=[]), "inputs.targets.rows"),
    "read_as no run writes": (_at("inputs", "targets", "read_as", value="banana"), "read_as"),
    "top.k above --top's limit": (_at("top", "k", value=10**6), "top.k"),
    "p_target above 1": (_at("top", "rows", 0, "p_target", value=2.0), "p_target"),
    "target outside the classes": (_at("top", "rows", 0, "target", value=3), "target"),
    "source not a string": (_at("top", "rows", 0, "source", value=5), "source"),
    "class names twice": (_at("class_names", value=["a", "a", "b"]), "class_names"),
    "a device no run names": (_at("device", value="tpu"), "device"),
    "class names of another count": (_at("class_names", value=["a", "b"]), "class_names"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_contradicting_state_is_refused_naming_the_field(tmp_path, real, name):
    edit, field = CASES[name]
    state = copy.deepcopy(real)
    edit(state)
    (tmp_path / "e.json").write_text(json.dumps(state))
    out = run_cli("merge", tmp_path / "e.json", "-f", "value")
    assert_usage_error(out, field)
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


RAW = {
    "bare NaN": ('"sum": NaN', "sum: NaN"),
    "bare Infinity": ('"sum": Infinity', "sum: Infinity"),
    "1e400": ('"sum": 1e400', "sum: 1e400"),
    "5000-digit count": ('"count": ' + "9" * 5000, "count: an integer of 5000 digits"),
}


@pytest.mark.parametrize("name", list(RAW))
def test_json_numbers_no_run_writes_are_refused_by_field(tmp_path, real, name):
    text, field = RAW[name]
    key = text.split(":")[0].strip('"')
    state = dict(real)
    state[key] = "@@"
    raw = json.dumps(state).replace(f'"{key}": "@@"', text)
    (tmp_path / "e.json").write_text(raw)
    out = run_cli("merge", tmp_path / "e.json", "-f", "value")
    assert_usage_error(out, field)
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


@pytest.mark.parametrize("spelling", ["nan", "inf", "-inf", "NaN", "Inf", "-Inf", "Infinity"])
def test_spellings_of_non_finite_numbers_are_read(tmp_path, real, spelling):
    state = copy.deepcopy(real)
    state["gradient"]["predictions"]["sum"] = spelling
    (tmp_path / "e.json").write_text(json.dumps(state))
    out = run_cli("merge", tmp_path / "e.json", "-f", "value")
    assert out.exit_code == 0, out.stderr


def test_hard_links_are_one_source(tmp_path):
    rng = np.random.default_rng(1)
    np.save(tmp_path / "x.npy", rng.normal(size=(6, 3)))
    np.save(tmp_path / "y.npy", np.arange(6) % 3)
    os.link(tmp_path / "x.npy", tmp_path / "xh.npy")
    os.link(tmp_path / "y.npy", tmp_path / "yh.npy")
    for name, x, y in (("a", "x", "y"), ("h", "xh", "yh")):
        out = run_cli("ce", tmp_path / f"{x}.npy", tmp_path / f"{y}.npy",
                      "--emit-state", tmp_path / f"{name}.json", "-f", "value")  # fmt: skip
        assert out.exit_code == 0, out.stderr
    state = json.loads((tmp_path / "a.json").read_text())
    assert {"device", "inode"} <= set(state["inputs"]["predictions"]["rows"][0])
    out = run_cli("merge", tmp_path / "a.json", tmp_path / "h.json", "-f", "value")
    assert_usage_error(out, "would count twice")
    for row in state["inputs"]["predictions"]["rows"]:  # a state without them still reads
        del row["device"], row["inode"]
    (tmp_path / "old.json").write_text(json.dumps(state))
    assert run_cli("merge", tmp_path / "old.json", "-f", "value").exit_code == 0


def _two_halves(tmp_path, make, command: list, *flags) -> list:
    """States of ``command`` over the first and the second half of the rows."""
    paths = []
    for half in (0, 1):
        files = make(tmp_path, half)
        path = tmp_path / f"s{half}.json"
        out = run_cli(*command, *files, *flags, "--emit-state", path, "-f", "value")
        assert out.exit_code == 0, out.stderr
        paths.append(path)
    return paths


def _class_data(classes=4, ignore=False):
    def make(root, half):
        rng = np.random.default_rng(half)
        x, y = rng.normal(size=(20, classes)), rng.integers(0, classes, 20)
        if ignore:
            y[::3] = -100
        np.save(root / f"x{half}.npy", x)
        np.save(root / f"y{half}.npy", y)
        return [root / f"x{half}.npy", root / f"y{half}.npy"]

    return make


def _float_data(shape, positive=False, lengths=False):
    def make(root, half):
        rng = np.random.default_rng(half)
        x, t = rng.normal(size=shape), rng.normal(size=shape)
        if positive:
            x = np.log(np.abs(x) / np.abs(x).sum(-1, keepdims=True))
            t = np.abs(t) / np.abs(t).sum(-1, keepdims=True)
        np.save(root / f"x{half}.npy", x)
        np.save(root / f"t{half}.npy", (t > 0).astype(float) if lengths else t)
        return [root / f"x{half}.npy", root / f"t{half}.npy"]

    return make


REAL_RUNS = {
    "ce every view": (_class_data(), ["ce"],
                      ["--by-class", "--top", "3", "--hist", "--calibration", "5", "--check"]),
    "ce weighted": (_class_data(), ["ce"], ["--weight", "1,2,0.5,3"]),
    "ce ignored targets": (_class_data(ignore=True), ["ce"], ["--by-class", "--calibration", "4"]),
    "bce-logits calibration": (_float_data((20, 2), lengths=True), ["bce-logits"],
                               ["--calibration", "5"]),
    "kl-div batchmean": (_float_data((20, 4), positive=True), ["kl-div"],
                         ["--reduction", "batchmean"]),
    "mse": (_float_data((20,)), ["mse"], ["--top", "3"]),
}  # fmt: skip


@pytest.mark.parametrize("name", list(REAL_RUNS))
def test_states_of_real_runs_merge(tmp_path, name):
    make, command, flags = REAL_RUNS[name]
    paths = _two_halves(tmp_path, make, command, *flags)
    out = run_cli("merge", *paths, "-f", "value")
    assert out.exit_code == 0, out.stderr


SAMPLE_RUNS = {
    "mse --group-by": ["mse", "sample_data/eval.csv", "--pred-cols", "cat",
                       "--target-cols", "dog", "--group-by", "split"],
    "ce --group-by": ["ce", "sample_data/eval.csv", "--pred-cols", "0:3",
                      "--target-cols", "label", "--group-by", "split", "--by-class"],
    "ctc sum": ["ctc", "sample_data/ctc_log_probs.npy", "sample_data/ctc_targets.csv",
                "sample_data/ctc_input_lengths.csv", "sample_data/ctc_target_lengths.csv",
                "--reduction", "sum"],
    "ctc mean": ["ctc", "sample_data/ctc_log_probs.npy", "sample_data/ctc_targets.csv",
                 "sample_data/ctc_input_lengths.csv", "sample_data/ctc_target_lengths.csv"],
}  # fmt: skip


@pytest.mark.parametrize("name", list(SAMPLE_RUNS))
def test_states_of_sample_data_runs_merge(tmp_path, name):
    out = run_cli(*SAMPLE_RUNS[name], "--emit-state", tmp_path / "s.json", "-f", "value")
    assert out.exit_code == 0, out.stderr
    out = run_cli("merge", tmp_path / "s.json", "-f", "value")
    assert out.exit_code == 0, out.stderr
