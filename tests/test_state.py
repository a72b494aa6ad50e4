"""Mergeable state: runs over parts of the rows, merged, give the run over all of them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from losscli.registry import get_spec
from tests.conftest import assert_usage_error, run_cli
from tests.test_reference import CASES, _case_id, _reference
from tests.test_stream import _write, option_args

MERGEABLE = [c for c in CASES if get_spec(c.loss).chunkable]


def _state(*args, path) -> dict:
    out = run_cli(*args, "--emit-state", path, "-f", "json")
    assert out.exit_code == 0, out.stderr
    return json.loads(path.read_text())


def _close(a, b, rel=1e-12, scale=0.0):
    """Equal to ``rel``, or within ``rel * scale`` for sums that cancel to about 0."""
    if isinstance(a, str) or isinstance(b, str):
        assert a == b
    else:
        assert a == pytest.approx(b, rel=rel, abs=rel * scale + 1e-300)


@pytest.mark.parametrize("case", MERGEABLE, ids=_case_id)
def test_states_of_parts_merge_into_the_state_of_the_whole(case, tmp_path):
    rows = len(np.asarray(case.inputs[0]))
    reduction = "batchmean" if "batchmean" in case.reductions else case.reductions[0]
    whole_paths = _write(tmp_path, case, "npy")
    common = [*option_args(case), "--reduction", reduction, "--dtype", "float64"]
    whole = _state(case.loss, *whole_paths, *common, path=tmp_path / "whole.json")
    expected = _reference(case, case.inputs, reduction)
    assert whole["sum"] / (whole["denominator"] or 1) == pytest.approx(float(expected), rel=1e-7)
    for parts in range(1, 6):
        cuts = sorted({0, rows, *np.random.default_rng(parts).integers(1, rows, parts - 1)})
        states = []
        for k, (start, stop) in enumerate(zip(cuts, cuts[1:])):
            part = type(
                "Part", (), {"inputs": tuple(np.asarray(a)[start:stop] for a in case.inputs)}
            )
            folder = tmp_path / f"p{parts}_{k}"
            folder.mkdir()
            paths = _write(folder, part, "npy")
            states.append(folder / "state.json")
            _state(case.loss, *paths, *common, path=states[-1])
        out = run_cli("merge", *states, "-f", "json")
        assert out.exit_code == 0, out.stderr
        merged = json.loads(out.stdout)
        one = run_cli(case.loss, *whole_paths, *common, "-f", "json")
        one = json.loads(one.stdout)
        _close(
            merged["value"], one["value"], 1e-12, abs(whole["sum"]) + whole["sum_squares"] ** 0.5
        )
        for name, summary in one["gradient"].items():
            for key in ("norm", "mean", "min", "max"):
                assert merged["gradient"][name][key] == pytest.approx(
                    summary[key], rel=1e-9, abs=1e-15
                ), (parts, name, key)
        for name, info in one["inputs"].items():
            assert merged["inputs"][name]["shape"] == info["shape"]
        # The state of the merge equals the state of the whole, field by field.
        from losscli import state as state_module

        loaded = [state_module.load(str(p), p.read_bytes()) for p in states]
        combined = state_module.plain(state_module.merge([str(p) for p in states], loaded))
        assert combined["count"] == whole["count"]
        _close(combined["sum"], whole["sum"], 1e-12, whole["sum_squares"] ** 0.5)
        _close(combined["sum_squares"], whole["sum_squares"])
        if whole["denominator"] is not None:
            _close(combined["denominator"], whole["denominator"])
        if whole["per_class"] is not None:
            assert combined["per_class"]["counts"] == whole["per_class"]["counts"]
            np.testing.assert_allclose(
                combined["per_class"]["sums"], whole["per_class"]["sums"], rtol=1e-12
            )
        for name, partial in whole["gradient"].items():
            # Each partial is of the gradient of ``scale`` times the sum: compared as the
            # gradient of the sum.
            ours = combined["gradient"][name]
            assert ours["count"] == partial["count"]
            powers = {"sum": 1, "sum_squares": 2, "min": 1, "max": 1}
            scale = (partial["sum_squares"] * partial["count"]) ** 0.5 / partial["scale"]
            for key, power in powers.items():
                mine, theirs = (
                    ours[key] / ours["scale"] ** power,
                    partial[key] / partial["scale"] ** power,
                )
                _close(mine, theirs, 1e-12, scale)


def test_per_class_sums_match_numpy(tmp_path, classes):
    x, y = classes
    y = y.copy()
    y[::5] = -100
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    state = _state(
        "ce", tmp_path / "x.npy", tmp_path / "y.npy", "--dtype", "float64", "--block-rows", "3",
        path=tmp_path / "s.json",
    )  # fmt: skip
    logp = x - np.log(np.exp(x).sum(1, keepdims=True))
    losses = -logp[np.arange(len(y)), np.where(y >= 0, y, 0)]
    kept = y >= 0
    sums = np.bincount(y[kept], losses[kept], minlength=x.shape[1])
    np.testing.assert_allclose(state["per_class"]["sums"], sums, rtol=1e-12)
    assert state["per_class"]["counts"] == np.bincount(y[kept], minlength=x.shape[1]).tolist()
    assert state["count"] == len(y)
    assert state["sum_squares"] == pytest.approx(float((losses[kept] ** 2).sum()), rel=1e-12)


def test_states_that_disagree_are_refused(tmp_path, classes):
    x, y = classes
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "x3.npy", x[:, :3])
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "y3.npy", y % 3)
    base = ["ce", tmp_path / "x.npy", tmp_path / "y.npy"]
    _state(*base, path=tmp_path / "a.json")
    _state(*base, "--label-smoothing", "0.1", path=tmp_path / "b.json")
    _state(*base, "--reduction", "sum", path=tmp_path / "c.json")
    _state("ce", tmp_path / "x3.npy", tmp_path / "y3.npy", path=tmp_path / "d.json")
    _state("nll", tmp_path / "x.npy", tmp_path / "y.npy", path=tmp_path / "e.json")
    _state(*base, "--dtype", "float64", path=tmp_path / "f.json")
    for other, what in (("b", "options"), ("c", "reduction"), ("d", "shape"), ("e", "loss"),
                        ("f", "dtype")):  # fmt: skip
        out = run_cli("merge", tmp_path / "a.json", tmp_path / f"{other}.json")
        assert_usage_error(out, "cannot be merged", what)
    (tmp_path / "bad.json").write_text("{not json")
    assert_usage_error(run_cli("merge", tmp_path / "bad.json"), "not a losscli state")
    (tmp_path / "other.json").write_text('{"format": "something"}')
    assert_usage_error(run_cli("merge", tmp_path / "other.json"), "not a losscli state")
    broken = json.loads((tmp_path / "a.json").read_text())
    broken["count"] = -1
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    assert_usage_error(run_cli("merge", tmp_path / "broken.json"), "count: -1 is not a count")
    assert_usage_error(run_cli("merge", tmp_path / "missing.json"), "cannot read")


def test_merged_result_is_gated_and_reduction_none_has_no_state(tmp_path, classes):
    x, y = classes
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    state = tmp_path / "s.json"
    _state("ce", tmp_path / "x.npy", tmp_path / "y.npy", path=state)
    value = float(run_cli("merge", state, "-f", "value").stdout)
    np.save(tmp_path / "x2.npy", x)  # another run, over rows of other files
    np.save(tmp_path / "y2.npy", y)
    _state("ce", tmp_path / "x2.npy", tmp_path / "y2.npy", path=tmp_path / "copy.json")
    tripped = run_cli(
        "merge", state, tmp_path / "copy.json", "--fail-above", str(value / 2), "-f", "json"
    )
    assert tripped.exit_code == 1
    assert json.loads(tripped.stdout)["gate"]["tripped"] is True
    assert "gate" in tripped.stderr
    assert run_cli("merge", state, "--fail-above", str(value * 2)).exit_code == 0
    none = run_cli("ce", tmp_path / "x.npy", tmp_path / "y.npy", "-r", "none",
                   "--emit-state", tmp_path / "n.json")  # fmt: skip
    assert_usage_error(none, "--emit-state needs a reduced loss")
    clash = run_cli(
        "ce", tmp_path / "x.npy", tmp_path / "y.npy", "--emit-state", tmp_path / "x.npy"
    )
    assert_usage_error(clash, "a file this run reads")


def test_hand_edited_or_repeated_states_are_refused(tmp_path, classes):
    x, y = classes
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    good = _state(
        "ce", tmp_path / "x.npy", tmp_path / "y.npy", "--by-class", path=tmp_path / "s.json"
    )
    assert_usage_error(
        run_cli("merge", tmp_path / "s.json", tmp_path / "s.json"), "same state file"
    )
    edits = [
        ("denominator", -4.0, "negative"),
        ("sum_squares", -1.0, "negative"),
        ("count", 10**40, "count: 1000"),
    ]
    for key, value, message in edits:
        (tmp_path / "e.json").write_text(json.dumps({**good, key: value}))
        assert_usage_error(run_cli("merge", tmp_path / "e.json"), message)
    counts = {**good, "per_class": {**good["per_class"], "counts": [0, 1, -3, 0, 0, 0]}}
    (tmp_path / "e.json").write_text(json.dumps(counts))
    assert_usage_error(
        run_cli("merge", tmp_path / "e.json"), "per_class.counts[2]: -3 is not a count"
    )
    gradient = {"predictions": {**good["gradient"]["predictions"], "min": 5.0, "max": 1.0}}
    (tmp_path / "e.json").write_text(json.dumps({**good, "gradient": gradient}))
    assert_usage_error(run_cli("merge", tmp_path / "e.json"), "min > max")
    text = (tmp_path / "s.json").read_text().replace('"count": ', '"count": 9, "count": ', 1)
    (tmp_path / "e.json").write_text(text)
    assert_usage_error(run_cli("merge", tmp_path / "e.json"), "'count' is there twice")
