"""Shared fixtures: a CLI runner with separate stdout/stderr, and input files of every format."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from losscli.cli import app

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data"
# What users read: the README and the reference pages in docs/, as one text.
DOC_PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DOCS = "\n".join(page.read_text() for page in DOC_PAGES)


@dataclass
class Outcome:
    exit_code: int
    stdout: str
    stderr: str


def run_cli(*args: str, input: bytes | str | None = None, internal_ok: bool = False) -> Outcome:
    """Run losscli in-process; stdout and stderr kept apart.

    Every run in the suite also checks the contract that holds for any input: no internal
    error (exit 70) and no Python warning text on stderr.
    """
    result = CliRunner().invoke(app, [str(a) for a in args], input=input, catch_exceptions=False)
    outcome = Outcome(result.exit_code, result.stdout, result.stderr)
    if not internal_ok:
        assert outcome.exit_code != 70, outcome.stderr
    assert "Warning:" not in outcome.stderr and "warnings.warn" not in outcome.stderr, outcome
    return outcome


def run_process(*args: str, input: bytes | None = None, env=None) -> subprocess.CompletedProcess:
    """Run ``python -m losscli`` as a real process (pipes, exit codes, stdin)."""
    return subprocess.run(
        [sys.executable, "-m", "losscli", *map(str, args)],
        input=input,
        capture_output=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )


def assert_usage_error(outcome: Outcome, *fragments: str) -> None:
    """Exit 2, nothing on stdout, one or two lines on stderr holding every fragment."""
    assert outcome.exit_code == 2, (outcome.exit_code, outcome.stdout, outcome.stderr)
    assert outcome.stdout == ""
    assert "Traceback" not in outcome.stderr
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 2, outcome.stderr
    for fragment in fragments:
        assert fragment in outcome.stderr, (fragment, outcome.stderr)


class Files:
    """Writes arrays into tmp_path in any format losscli reads."""

    def __init__(self, root: Path):
        self.root = root

    def csv(self, name: str, array, header=None, delimiter=",") -> Path:
        path = self.root / name
        array = np.asarray(array)
        rows = array.reshape(len(array), -1) if array.ndim else array.reshape(1, 1)
        lines = [delimiter.join(header)] if header else []
        lines += [delimiter.join(repr(float(v)) for v in row) for row in rows]
        path.write_text("\n".join(lines) + "\n")
        return path

    def text(self, name: str, content: str | bytes) -> Path:
        path = self.root / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return path

    def npy(self, name: str, array) -> Path:
        path = self.root / name
        np.save(path, np.asarray(array))
        return path

    def npz(self, name: str, **arrays) -> Path:
        path = self.root / name
        np.savez(path, **arrays)
        return path

    def parquet(self, name: str, **columns) -> Path:
        path = self.root / name
        pq.write_table(pa.table({k: np.asarray(v) for k, v in columns.items()}), path)
        return path


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return Files(tmp_path)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def classes(rng):
    """Logits of 32 samples over 6 classes and their class indices."""
    x = rng.normal(size=(32, 6)) * 2
    y = rng.integers(0, 6, size=32)
    return x, y


def read_back(path: Path) -> np.ndarray:
    """A written array file read with NumPy or pyarrow (not with the code under test)."""
    suffix = path.suffix
    if suffix == ".npy":
        return np.load(path)
    if suffix == ".parquet":
        table = pq.read_table(path)
        return np.column_stack([c.to_numpy() for c in table.columns])
    delimiter = {".csv": ",", ".tsv": "\t"}.get(suffix)
    with open(path) as handle:
        first = handle.readline()
    numeric = all(_is_float(cell) for cell in first.strip().split(delimiter))
    return np.loadtxt(path, delimiter=delimiter, skiprows=0 if numeric else 1, ndmin=2)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def torch_cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def value_of(outcome: Outcome) -> float:
    """The value of a successful ``-f value`` run."""
    assert outcome.exit_code == 0, outcome.stderr
    return float(outcome.stdout)


def sample_ce() -> float:
    """The mean cross-entropy of the sample logits and labels, by the NumPy formula."""
    from tests import reference

    x = np.loadtxt(SAMPLE / "logits.csv", delimiter=",")
    return reference.cross_entropy(x, np.loadtxt(SAMPLE / "labels.csv").astype(int))


def rows_text(rows) -> str:
    """Rows of values as CSV text."""
    return "".join(",".join(map(str, r)) + "\n" for r in rows)
