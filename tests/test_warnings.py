"""Warnings a newcomer reads: one line per decision for every input it concerns, columns
counted from 0 as --pred-cols counts them, and advice that never makes the result wrong."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import run_cli


def _to_csv(path, array, names=None, index=True):
    """A table as pandas' DataFrame.to_csv writes it (index=True: an unnamed first column
    of row numbers)."""
    array = np.asarray(array)
    array = array.reshape(len(array), -1)
    names = names or [str(i) for i in range(array.shape[1])]
    lines = [",".join(([""] if index else []) + names)]
    for number, row in enumerate(array):
        cells = [repr(v.item()) for v in row]
        lines.append(",".join(([str(number)] if index else []) + cells))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def frames(tmp_path):
    rng = np.random.default_rng(4)
    logits, labels = rng.normal(size=(12, 3)), rng.integers(0, 3, 12)
    return tmp_path, logits, labels


@pytest.mark.parametrize("names", [["a", "b", "c"], None])
def test_pandas_index_columns_are_one_warning_naming_every_input(frames, names):
    root, logits, labels = frames
    x = _to_csv(root / "x.csv", logits, names)
    y = _to_csv(root / "y.csv", labels, ["label"])
    out = run_cli("ce", x, y, "-f", "json")
    assert out.exit_code == 0, out.stderr
    lines = [line for line in out.stderr.splitlines() if "row index" in line]
    assert len(lines) == 1, out.stderr
    assert str(x) in lines[0] and str(y) in lines[0] and "column 0" in lines[0]
    assert "column 1" not in out.stderr
    x2 = _to_csv(root / "x2.csv", logits, names, index=False)
    y2 = _to_csv(root / "y2.csv", labels, ["label"], index=False)
    plain = run_cli("ce", x2, y2, "-f", "json")
    assert json.loads(out.stdout)["value"] == json.loads(plain.stdout)["value"]
    assert len([w for w in json.loads(out.stdout)["warnings"] if "row index" in w]) == 1


def test_a_header_of_column_numbers_gets_advice_that_keeps_the_result_right(frames):
    root, logits, labels = frames
    x = _to_csv(root / "x.csv", logits, None, index=False)  # header 0,1,2: a real header
    y = _to_csv(root / "y.csv", labels, ["label"], index=False)
    out = run_cli("ce", x, y, "-f", "value")
    assert out.exit_code == 0, out.stderr
    assert "to read it as data" not in out.stderr
    assert "only if that line is data" in out.stderr
    # Followed blindly, the advice would read the header as data: the tool does not offer it
    # as the fix; the run itself read the header as a header.
    np.save(root / "x.npy", logits)
    np.save(root / "y.npy", labels)
    npy = run_cli("ce", root / "x.npy", root / "y.npy", "-f", "value")
    assert float(out.stdout) == pytest.approx(float(npy.stdout), rel=1e-6)


def test_the_same_warning_from_many_blocks_is_said_once(frames):
    root, logits, labels = frames
    x = _to_csv(root / "x.csv", logits, ["a", "b", "c"])
    y = _to_csv(root / "y.csv", labels, ["label"])
    out = run_cli("ce", x, y, "--block-rows", "2", "-f", "value")
    assert out.exit_code == 0
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
