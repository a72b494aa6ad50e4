"""The state schema: a hand-edited state is refused with one line naming the field, never an
internal error; states of the same rows are refused, disjoint parts merge."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import assert_usage_error, run_cli


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> dict:
    """The state of a ce run over 12 rows with every view kept."""
    root = tmp_path_factory.mktemp("good")
    rng = np.random.default_rng(3)
    np.save(root / "x.npy", rng.normal(size=(12, 3)))
    np.save(root / "y.npy", np.arange(12) % 3)
    out = run_cli("ce", root / "x.npy", root / "y.npy", "--top", "3", "--hist", "--check",
                  "--emit-state", root / "s.json", "-f", "value")  # fmt: skip
    assert out.exit_code == 0, out.stderr
    return json.loads((root / "s.json").read_text())


def _merge_edited(tmp_path, state, *views) -> object:
    (tmp_path / "e.json").write_text(json.dumps(state))
    return run_cli("merge", tmp_path / "e.json", *views)


def _set(key, value):
    return lambda s: s.update({key: value})


EDITS = {
    "empty inputs": (_set("inputs", {}), "inputs.predictions: missing"),
    "no sources": (lambda s: s["inputs"]["targets"].pop("sources"), "inputs.targets.sources"),
    "sources not a list": (
        lambda s: s["inputs"]["targets"].update(sources="y.npy"),
        "inputs.targets.sources",
    ),
    "empty sources": (lambda s: s["inputs"]["targets"].update(sources=[]), "sources: empty"),
    "gradient of an unknown input": (
        lambda s: s["gradient"].update(y=s["gradient"]["predictions"]),
        "gradient.y",
    ),
    "gradient of targets": (
        lambda s: s["gradient"].update(targets=s["gradient"]["predictions"]),
        "gradient.targets",
    ),
    "reduction median": (_set("reduction", "median"), 'reduction: "median"'),
    "reduction none": (_set("reduction", "none"), "reduction none has no state"),
    "sum with a denominator": (_set("reduction", "sum"), "denominator"),
    "dtype float8": (_set("dtype", "float8"), 'dtype: "float8"'),
    "unknown loss": (_set("loss", "focal-tversky"), 'loss: "focal-tversky"'),
    "another loss's class": (_set("torch", "MSELoss"), "torch"),
    "unknown option": (lambda s: s["options"].update(gamma=2.0), "options.gamma"),
    "missing option": (lambda s: s["options"].pop("label_smoothing"), "options.label_smoothing"),
    "option of the wrong type": (
        lambda s: s["options"].update(ignore_index="-100"),
        "options.ignore_index",
    ),
    "option out of its domain": (
        lambda s: s["options"].update(label_smoothing=2.0),
        "options.label_smoothing",
    ),
    "weight not numbers": (lambda s: s["options"].update(weight=["a"]), "options.weight[0]"),
    "wrong input names": (
        lambda s: s["inputs"].update(labels=s["inputs"].pop("targets")),
        "inputs.labels",
    ),
    "negative count": (_set("count", -3), "count: -3 is not a count"),
    "boolean count": (_set("count", True), "count"),
    "shape of text": (lambda s: s["inputs"]["targets"].update(shape=["12"]), "shape[0]"),
    "rows that disagree": (lambda s: s["inputs"]["targets"].update(shape=[11]), "11 rows"),
    "gradient count off its shape": (
        lambda s: s["gradient"]["predictions"].update(count=7),
        "gradient.predictions.count",
    ),
    "gradient min above max": (
        lambda s: s["gradient"]["predictions"].update(min=9.0, max=1.0),
        "min > max",
    ),
    "sum not a number": (_set("sum", "lots"), 'sum: "lots" is not a number'),
    "unknown field": (_set("median", 1.0), "median: not a field"),
    "top with more rows than k": (lambda s: s["top"].update(k=1), "top.rows"),
    "negative histogram bucket": (
        lambda s: s["hist"]["positive"].update({"3": -1}),
        'hist.positive["3"]',
    ),
    "check sum missing": (lambda s: s["check"].pop("sum"), "check.sum: missing"),
    "per-class of a loss without classes": (
        lambda s: s.update(
            per_class={"sums": [1.0], "counts": [1]}, loss="mse", torch="MSELoss", options={}
        ),  # fmt: skip
        "per_class",
    ),
}


@pytest.mark.parametrize("name", list(EDITS))
def test_hand_edited_state_is_refused_naming_the_field(tmp_path, good, name):
    edit, fragment = EDITS[name]
    state = copy.deepcopy(good)
    edit(state)
    out = _merge_edited(tmp_path, state, "--top", "3", "--hist")
    assert_usage_error(out, fragment)
    assert len(out.stderr.strip().splitlines()) == 1


# Keys a run may leave out, and values that may be null.
OPTIONAL = {("moments",), ("per_class",), ("hist",), ("top",), ("check",), ("groups",),
            ("class_names",), ("warnings",), ("device",)}  # fmt: skip
NULLABLE = {("moments",), ("per_class",), ("hist",), ("top",), ("check",), ("groups",),
            ("class_names",), ("options", "weight"), ("check", "fd_max_rel_error")}  # fmt: skip
CELLS = ("target", "predicted", "p_target", "prediction", "source")


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


def _still_valid(path, operation, value) -> bool:
    """Whether the state with this one change is still one a run can write (by the rules
    of the README, written out here independently of the schema)."""
    generic = tuple("*" if isinstance(p, int) else p for p in path)
    if path[:1] == ("inputs",) and path[2:] in (("rows",), ("read_as",)):
        return operation == "drop" or (value is None and path[2] == "rows")  # as in version 1
    if (
        path[:1] == ("inputs",)
        and path[2:3] == ("rows",)
        and path[4:] in (("modified",), ("device",), ("inode",))
    ):
        return operation == "drop" or value is None  # a source of unknown time or inode
    if path[:1] == ("gradient",) and path[2:] == ("scale",):
        return operation == "drop"  # a state without it reads as 1 (docs/scale.md)
    if len(path) == 4 and path[:2] == ("top", "rows") and path[3] in CELLS:
        # the source a name, the class target an index, p[target] a probability or null
        cell = path[3]
        if cell == "source":
            return operation == "drop" or isinstance(value, str)
        if cell == "p_target":
            return operation == "drop" or value is None
        if cell in ("target", "predicted"):
            return operation == "drop"
        return operation == "drop" or not isinstance(value, (bool, dict))
    if len(path) == 4 and path[:2] == ("top", "rows") and path[3] == "loss":
        return value is None and operation != "drop"
    if operation == "drop":
        return generic in OPTIONAL
    return value is None and generic in NULLABLE


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_mutated_state_exits_0_only_when_still_valid_never_70(tmp_path, good, data):
    paths = [p for p in _paths(good) if p and p[0] not in ("format", "version")]
    path = data.draw(st.sampled_from(paths))
    state = copy.deepcopy(good)
    parent = state
    for step in path[:-1]:
        parent = parent[step]
    old = parent[path[-1]]
    operations = ["replace"] + (["drop"] if isinstance(parent, dict) else [])
    operation = data.draw(st.sampled_from(operations))
    others = [v for v in (None, "x", True, {"a": 1}, [], 7.5)
              if type(v) is not type(old) and not (isinstance(old, int) and v == 7.5)]  # fmt: skip
    value = data.draw(st.sampled_from(others))
    if operation == "drop":
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    out = _merge_edited(tmp_path, state, "-f", "json")  # run_cli asserts the exit code is not 70
    assert out.exit_code in (0, 2), out.stderr
    valid = _still_valid(path, operation, value)
    assert (out.exit_code == 0) == valid, (path, operation, value, out.stderr)
    if out.exit_code == 2:
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def _run(tmp_path, name, *args):
    out = run_cli("ce", *args, "--emit-state", tmp_path / name, "-f", "value")
    assert out.exit_code == 0, out.stderr
    return tmp_path / name


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(5)
    np.save(tmp_path / "x.npy", rng.normal(size=(20, 3)))
    np.save(tmp_path / "y.npy", rng.integers(0, 3, 20))
    return tmp_path / "x.npy", tmp_path / "y.npy"


def test_a_copied_state_is_refused_naming_both(tmp_path, data):
    base = _run(tmp_path, "base.json", *data)
    (tmp_path / "copy.json").write_text(base.read_text())
    out = run_cli("merge", base, tmp_path / "copy.json")
    assert_usage_error(out, "base.json", "copy.json", "same state")


def test_two_states_of_the_same_file_are_refused_naming_both(tmp_path, data):
    a = _run(tmp_path, "a.json", *data)
    b = _run(tmp_path, "b.json", *data, "--check")  # another view, the same rows
    out = run_cli("merge", a, b)
    assert_usage_error(out, "a.json", "b.json", "rows 0:20", "x.npy")


def test_overlapping_parts_are_refused_disjoint_parts_merge(tmp_path, data):
    x, y = data
    first = _run(tmp_path, "p1.json", f"{x}?rows=0:8", f"{y}?rows=0:8")
    second = _run(tmp_path, "p2.json", f"{x}?rows=8:20", f"{y}?rows=8:20")
    middle = _run(tmp_path, "p3.json", f"{x}?rows=5:12", f"{y}?rows=5:12")
    assert_usage_error(run_cli("merge", first, middle), "p1.json", "p3.json", "rows 5:8")
    merged = run_cli("merge", first, second, "-f", "json")
    whole = run_cli("ce", x, y, "-f", "json")
    assert json.loads(merged.stdout)["value"] == pytest.approx(
        json.loads(whole.stdout)["value"], rel=1e-12
    )
    assert json.loads(merged.stdout)["inputs"]["predictions"]["shape"] == [20, 3]


def test_states_of_different_files_merge_and_shared_targets_are_not_a_repeat(tmp_path, data):
    x, y = data
    np.save(tmp_path / "x2.npy", np.load(x) + 1)
    a = _run(tmp_path, "a.json", x, y)
    b = _run(tmp_path, "b.json", tmp_path / "x2.npy", y)  # other predictions, same targets
    out = run_cli("merge", a, b, "-f", "json")
    assert out.exit_code == 0, out.stderr
    assert json.loads(out.stdout)["inputs"]["predictions"]["shape"] == [40, 3]


def test_a_rewritten_file_is_another_source(tmp_path, data):
    x, y = data
    a = _run(tmp_path, "a.json", x, y)
    np.save(x, np.load(x) * 2)  # the file of another day, under the same name
    import os

    os.utime(x, ns=(1, 1))
    b = _run(tmp_path, "b.json", x, y)
    y_rows = json.loads(b.read_text())["inputs"]["targets"]["rows"]
    assert y_rows[0]["count"] == 20
    # The targets file is the same one: rows of it repeat, but the predictions differ.
    assert run_cli("merge", a, b, "-f", "value").exit_code == 0


def test_version_1_states_are_read_and_compared_by_content(tmp_path, data):
    state = json.loads(_run(tmp_path, "a.json", *data).read_text())
    state["version"] = 1
    for info in state["inputs"].values():
        del info["rows"]
    (tmp_path / "v1.json").write_text(json.dumps(state))
    assert run_cli("merge", tmp_path / "v1.json", "-f", "value").exit_code == 0
    (tmp_path / "v1copy.json").write_text(json.dumps(state))
    out = run_cli("merge", tmp_path / "v1.json", tmp_path / "v1copy.json")
    assert_usage_error(out, "v1.json", "v1copy.json")
    state["version"] = 3
    (tmp_path / "v3.json").write_text(json.dumps(state))
    assert_usage_error(run_cli("merge", tmp_path / "v3.json"), "version 3")
