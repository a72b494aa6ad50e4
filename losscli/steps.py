"""The intermediate quantities that ``--steps`` shows, as a plain table of rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Steps:
    """Columns and rows of intermediate values for the first samples, plus notes below them."""

    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def first_rows(array, limit: int):
    """The first ``limit`` samples, with any trailing dimensions after the classes flattened."""
    import numpy as np

    if array.ndim > 2:
        array = np.moveaxis(np.asarray(array[:limit]), 1, -1).reshape(-1, array.shape[1])
    return np.asarray(array[:limit], dtype=np.float64)
