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


def element_rows(arrays, limit: int):
    """The first ``limit`` elements of predictions and targets, flattened, as float64."""
    import numpy as np

    preds = np.asarray(arrays["predictions"], dtype=np.float64).reshape(-1)[:limit]
    targets = np.asarray(arrays["targets"], dtype=np.float64).reshape(-1)[:limit]
    return preds, targets


def element_weights(arrays, options, limit: int):
    """--weight broadcast to the predictions and flattened like element_rows, or None."""
    import numpy as np

    weight = options["weight"]
    if weight is None:
        return None
    shape = arrays["predictions"].shape
    return np.broadcast_to(weight, shape).reshape(-1)[:limit].astype(np.float64)
