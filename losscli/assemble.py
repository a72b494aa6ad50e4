"""Assembling a Result: what it says of each input and of the class names."""

from __future__ import annotations

from typing import Any

import numpy as np

from losscli.io import InputArray
from losscli.registry import (
    FLOAT,
    INDEX,
    LABEL,
    LENGTH,
    LossSpec,
)
from losscli.result import Result

READ_AS = {FLOAT: "values", LABEL: "labels", LENGTH: "lengths", INDEX: "class indices"}


def class_names(result: Result, ctx, first, spec: LossSpec) -> list[str] | None:
    """Class names: --classes where the targets were names it mapped, else the predictions'
    header (where the targets are class indices)."""
    if result.targets_kind not in ("class indices", "class names, mapped to indices"):
        return None
    named = result.targets_kind == "class names, mapped to indices"
    return (ctx.classes if named else None) or first[spec.inputs[0].name].header


def input_summary(inp: InputArray, targets_kind, input_spec, shape) -> dict[str, Any]:
    """What JSON and the table say about one input: source, shape, and how it was read."""
    read_as = READ_AS[input_spec.role]
    if input_spec.name == "targets" and targets_kind:
        read_as = targets_kind
    summary = {"source": inp.info.get("label", inp.source), "shape": shape, "read_as": read_as}
    summary["shards"] = inp.info.get("shards", 1)
    for key in ("format", "header", "index_column"):
        if key in inp.info:
            summary[key] = inp.info[key]
    return summary


def sample_rows(array: np.ndarray, spec: LossSpec) -> int:
    """How many samples the first input holds (its batch axis)."""
    axis = spec.batch_axis if array.ndim > spec.batch_axis else 0
    return int(array.shape[axis]) if array.ndim else 1
