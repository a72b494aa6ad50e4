"""Mergeable state: what a run over some rows keeps, so that runs over parts of the rows
combine into the result of one run over all of them (``--emit-state``, ``losscli merge``).

A state is JSON. It holds the loss, its options, reduction and dtype; the float64 sum and
denominator of the loss; the count and sum of squares of the unreduced loss (torch's
``reduction="none"`` elements); per-class sums and counts where the targets are class
indices; for each gradient, the count, sum, sum of squares, min and max of the gradient of
the *sum* (the factor 1/denominator is applied once the states are merged); and the shape and
source of every input. Every number is a float64 written with 17 significant digits, so a
state read back is the state written.
"""

from __future__ import annotations

import json
import math
from typing import Any

from losscli.errors import InputError
from losscli.views import is_count as _count

FORMAT = "losscli-state"
VERSION = 1


def _number(value: float) -> float | str:
    """A float for JSON: NaN and infinities as strings (JSON has no such numbers)."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return float(value)


def _float(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InputError(f"{where}: {value!r} is not a number")
    try:
        return float(value)
    except (ValueError, OverflowError):
        shown = repr(value) if len(repr(value)) < 40 else f"{repr(value)[:30]}..."
        raise InputError(f"{where}: {shown} is not a float64 number") from None


def build(result, block_run, gradient_stats: dict, sources: dict[str, list[str]]) -> dict:
    """The state of a finished run (its Result, its engine, its gradient partials)."""
    elements = block_run.elements
    per_class = None
    if elements.classes:
        per_class = {
            "sums": [_number(v) for v in elements.class_sums.tolist()],
            "counts": elements.class_counts.tolist(),
        }
    from losscli.result import _plain

    return {
        "format": FORMAT,
        "version": VERSION,
        "loss": result.loss,
        "torch": result.torch_class,
        "reduction": result.reduction,
        "options": _plain(result.options),
        "dtype": result.dtype,
        "device": result.device,
        "sum": _number(block_run.total),
        "denominator": _number(block_run.denominator) if block_run.mean else None,
        "count": elements.count,
        "sum_squares": _number(elements.squares),
        "moments": _moments_json(elements.moments),
        "per_class": per_class,
        "hist": elements.sketch.to_dict() if elements.sketch is not None else None,
        "top": {
            "k": elements.top.k,
            "rows": [
                {**_plain(r), "source": sources[_first(result)][0]} for r in elements.top.rows
            ],
        }
        if elements.top is not None
        else None,
        "gradient": {
            name: {
                "count": stats.count,
                "sum": _number(stats.total),
                "sum_squares": _number(stats.squares),
                "min": _number(stats.low),
                "max": _number(stats.high),
            }
            for name, stats in gradient_stats.items()
        },
        "inputs": {
            name: {"shape": info["shape"], "sources": sources[name], "read_as": info["read_as"]}
            for name, info in result.inputs.items()
        },
        # --check's warning is said again from the merged check, not from each part's.
        "warnings": [w for w in result.warnings if not w.startswith("--check: ")],
    }


def groups_state(column: str, elements) -> dict:
    """The --group-by part of a state: the column, and per value the sum and row count."""
    groups = elements.groups
    return {
        "column": column,
        "sums": {k: _number(v) for k, v in groups.sums.items()},
        "counts": dict(groups.counts),
    }


def dumps(state: dict) -> str:
    from losscli import views

    if isinstance(state.get("hist"), views.Sketch):
        state = {**state, "hist": state["hist"].to_dict()}
    if isinstance(state.get("moments"), views.Moments):
        state = {**state, "moments": _moments_json(state["moments"])}
    return json.dumps(state, indent=1) + "\n"


def _moments_json(moments) -> dict:
    count, mean, m2 = moments.count, moments.mean, moments.m2
    return {"count": count, "mean": _number(mean), "m2": _number(m2)}


def load(path: str, text: bytes) -> dict:
    """A state read from ``path``, its fields checked (InputError names what is wrong)."""

    def unique_keys(pairs):
        keys = [key for key, _ in pairs]
        if len(set(keys)) != len(keys):
            twice = sorted({k for k in keys if keys.count(k) > 1})
            raise InputError(f"{path}: not a losscli state (the key {twice[0]!r} is there twice)")
        return dict(pairs)

    try:
        state = json.loads(text.decode("utf-8"), object_pairs_hook=unique_keys)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise InputError(f"{path}: not a losscli state (not JSON: {error})") from None
    return read(path, state)


def read(path: str, state: Any) -> dict:
    """A state as ``build`` or JSON gives it, its fields checked and turned into what
    ``merge`` and ``to_result`` take: numbers as floats, the sketch and moments as objects.
    ``path`` names it in messages."""
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise InputError(f"{path}: not a losscli state (written by --emit-state)")
    if state.get("version") != VERSION:
        raise InputError(
            f"{path}: a losscli state of version {state.get('version')!r}; this losscli reads "
            f"version {VERSION}"
        )
    for key in ("loss", "reduction", "dtype"):
        if not isinstance(state.get(key), str):
            raise InputError(f"{path}: the state has no {key}")
    for key in ("sum", "sum_squares"):
        state[key] = _float(state.get(key), f"{path}: {key}")
    if state.get("denominator") is not None:
        state["denominator"] = _float(state["denominator"], f"{path}: denominator")
    elif state["reduction"] in ("mean", "batchmean"):
        raise InputError(f"{path}: a {state['reduction']} state has no denominator")
    state["denominator"] = state.get("denominator")
    for key in ("denominator", "sum_squares"):  # sums of weights and of squares
        if state.get(key) is not None and state[key] < 0:
            raise InputError(f"{path}: {key} {state[key]!r} is negative")
    count = state.get("count")
    if not _count(count):
        raise InputError(f"{path}: count {count!r} is not a row count")
    for name in ("inputs", "gradient", "options"):
        if not isinstance(state.get(name), dict):
            raise InputError(f"{path}: the state has no {name}")
    for name, info in state["inputs"].items():
        shape = info.get("shape") if isinstance(info, dict) else None
        if not isinstance(shape, list) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
        ):
            raise InputError(f"{path}: input {name} has no shape")
    for name, partial in state["gradient"].items():
        if not isinstance(partial, dict):
            raise InputError(f"{path}: gradient {name} is not a partial")
        for key in ("sum", "sum_squares", "min", "max"):
            partial[key] = _float(partial.get(key), f"{path}: gradient {name} {key}")
        if not _count(partial.get("count")):
            raise InputError(f"{path}: gradient {name} has no count")
        if partial["sum_squares"] < 0 or partial["min"] > partial["max"]:
            raise InputError(f"{path}: gradient {name} has a negative sum of squares or min > max")
    per_class = state.get("per_class")
    if per_class is not None:
        if not isinstance(per_class, dict):
            raise InputError(f"{path}: per_class is not sums and counts")
        sums, counts = per_class.get("sums"), per_class.get("counts")
        if not isinstance(sums, list) or not isinstance(counts, list) or len(sums) != len(counts):
            raise InputError(f"{path}: per_class sums and counts do not match")
        per_class["sums"] = [_float(v, f"{path}: per_class") for v in sums]
        if not all(_count(c) for c in counts):
            raise InputError(f"{path}: per_class counts are not row counts")
    _load_moments(path, state)
    _load_views(path, state)
    _load_check(path, state)
    _load_groups(path, state)
    names = state.get("class_names")
    if names is not None and not (
        isinstance(names, list) and all(isinstance(n, str) for n in names)
    ):
        raise InputError(f"{path}: class_names is not a list of names")
    warnings = state.get("warnings", [])
    if not isinstance(warnings, list) or not all(isinstance(w, str) for w in warnings):
        raise InputError(f"{path}: warnings is not a list of messages")
    return state


def _load_views(path: str, state: dict) -> None:
    """Check the histogram sketch and the top rows of a state (either may be absent)."""
    from losscli import views

    if state.get("hist") is not None:
        if not isinstance(state["hist"], dict):
            raise InputError(f"{path}: hist is not a histogram")
        try:
            state["hist"] = views.Sketch.from_dict(state["hist"], path)
        except ValueError as error:
            raise InputError(str(error)) from None
    top = state.get("top")
    if top is not None:
        rows = top.get("rows") if isinstance(top, dict) else None
        if not _count(top.get("k") if isinstance(top, dict) else None) or not isinstance(
            rows, list
        ):
            raise InputError(f"{path}: top is not a list of rows")
        for row in rows:
            if not (isinstance(row, dict) and _count(row.get("row"))):
                raise InputError(f"{path}: a top row has no row number")
            loss = row.get("loss")
            row["loss"] = math.nan if loss is None else _float(loss, f"{path}: top row loss")
            for key in ("target", "predicted", "p_target", "prediction", "source"):
                if key in row and not _cell(row[key]):
                    raise InputError(f"{path}: a top row's {key} is not a value")


def _load_moments(path: str, state: dict) -> None:
    """Check the count, mean and M2 of the samples (absent from states of older versions)."""
    from losscli import views

    moments = state.get("moments")
    if moments is None:
        return
    if not isinstance(moments, dict) or not _count(moments.get("count")):
        raise InputError(f"{path}: moments is not a count, mean and m2")
    mean = _float(moments.get("mean"), f"{path}: moments mean")
    m2 = _float(moments.get("m2"), f"{path}: moments m2")
    if m2 < 0:
        raise InputError(f"{path}: moments m2 {m2!r} is negative")
    state["moments"] = views.Moments(moments["count"], mean, m2)


def _load_check(path: str, state: dict) -> None:
    """Check the --check partials of a state (absent without --check)."""
    check = state.get("check")
    if check is None:
        return
    if not isinstance(check, dict):
        raise InputError(f"{path}: check is not a --check state")
    for key in ("sum", "denominator", "grad_diff_squares", "grad_ref_squares", "fd_max_rel_error"):
        if check.get(key) is not None:
            check[key] = _float(check[key], f"{path}: check {key}")
            if key != "sum" and check[key] < 0:
                raise InputError(f"{path}: check {key} {check[key]!r} is negative")
        elif key == "sum":
            raise InputError(f"{path}: check has no sum")
        else:
            check[key] = None
    if not _count(check.get("fd_points")):
        raise InputError(f"{path}: check fd_points is not a count")


def _load_groups(path: str, state: dict) -> None:
    """Check the --group-by part of a state (absent without --group-by)."""
    groups = state.get("groups")
    if groups is None:
        return
    if not isinstance(groups, dict):
        raise InputError(f"{path}: groups is not a --group-by state")
    sums, counts = groups.get("sums"), groups.get("counts")
    if not (
        isinstance(groups.get("column"), str)
        and isinstance(sums, dict)
        and isinstance(counts, dict)
        and set(sums) == set(counts)
        and all(_count(c) for c in counts.values())
    ):
        raise InputError(f"{path}: groups is not a --group-by state")
    groups["sums"] = {k: _float(v, f"{path}: groups") for k, v in sums.items()}


def _cell(value: Any) -> bool:
    """Whether a top row's field is what a run writes: a number, a text, a short list of
    numbers (null for NaN), or an argmax summary."""
    if isinstance(value, (int, float, str)) or value is None:
        return True
    if isinstance(value, list):
        return len(value) <= 8 and all(map(_number_or_null, value))
    if isinstance(value, dict):
        return set(value) == {"argmax", "max", "size"} and all(map(_number_or_null, value.values()))
    return False


def _number_or_null(value: Any) -> bool:
    """A number as JSON holds it: NaN and infinities are written as null."""
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _first(result) -> str:
    return next(iter(result.inputs))


def _refuse(paths, what: str, values) -> None:
    first = values[0]
    for path, value in zip(paths, values):
        if value != first:
            raise InputError(
                f"states cannot be merged: {paths[0]} has {what} {first!r}, {path} has {value!r}"
            )


def merge(paths: list[str], states: list[dict]) -> dict:
    """One state from states of the same loss, options, reduction and dtype over parts of the
    rows; refuses (InputError) states that do not agree."""
    from losscli import check as check_module
    from losscli import views

    for what in ("loss", "reduction", "dtype", "options"):
        _refuse(paths, what, [s[what] for s in states])
    _refuse(paths, "inputs", [sorted(s["inputs"]) for s in states])
    for name in states[0]["inputs"]:
        tails = [s["inputs"][name]["shape"][1:] for s in states]
        _refuse(paths, f"{name} shape past the first axis", tails)
    _refuse(paths, "gradients", [sorted(s["gradient"]) for s in states])
    classes = [None if s["per_class"] is None else len(s["per_class"]["sums"]) for s in states]
    _refuse(paths, "classes", classes)
    _refuse(paths, "class names", [s.get("class_names") for s in states])
    merged = dict(states[0])
    merged["sum"] = views.fsum(s["sum"] for s in states)
    if merged["denominator"] is not None:
        merged["denominator"] = views.fsum(s["denominator"] for s in states)
    merged["count"] = sum(s["count"] for s in states)
    merged["sum_squares"] = views.fsum(s["sum_squares"] for s in states)
    if classes[0] is not None:
        merged["per_class"] = {
            "sums": [views.fsum(c) for c in zip(*(s["per_class"]["sums"] for s in states))],
            "counts": [sum(c) for c in zip(*(s["per_class"]["counts"] for s in states))],
        }
    merged["gradient"] = {}
    for name in states[0]["gradient"]:
        parts = [s["gradient"][name] for s in states]
        merged["gradient"][name] = {
            "count": sum(p["count"] for p in parts),
            "sum": views.fsum(p["sum"] for p in parts),
            "sum_squares": views.fsum(p["sum_squares"] for p in parts),
            "min": _nan_or(min, [p["min"] for p in parts]),
            "max": _nan_or(max, [p["max"] for p in parts]),
        }
    merged["inputs"] = {}
    for name, info in states[0]["inputs"].items():
        rows = sum(s["inputs"][name]["shape"][0] for s in states) if info["shape"] else None
        merged["inputs"][name] = {
            "shape": [rows, *info["shape"][1:]] if info["shape"] else [],
            "sources": [src for s in states for src in s["inputs"][name]["sources"]],
            "read_as": info.get("read_as", "values"),
        }
    sketches = [s.get("hist") for s in states]
    if all(sketches):
        merged["hist"] = views.Sketch()
        for sketch in sketches:
            merged["hist"].merge(sketch)
    else:
        merged["hist"] = None
    tops = [s.get("top") for s in states]
    if all(tops):
        top = views.TopRows(min(t["k"] for t in tops))
        for t in tops:
            top.merge(t["rows"])
        merged["top"] = {"k": top.k, "rows": top.rows}
    else:
        merged["top"] = None
    notes = []  # what the merged result lacks because a part lacks it
    grouped = [s.get("groups") for s in states]
    merged["groups"] = None
    if any(grouped) and not all(grouped):
        notes.append(
            f"--group-by: {paths[grouped.index(None)]} was run without it, so the merged "
            "result has no groups"
        )
    if all(grouped):
        _refuse(paths, "--group-by column", [g["column"] for g in grouped])
        groups = views.Groups()
        for g in grouped:
            groups.merge(g["sums"], g["counts"])
        merged["groups"] = {"column": grouped[0]["column"], "sums": groups.sums,
                            "counts": groups.counts}  # fmt: skip
    moments = [s.get("moments") for s in states]
    merged["moments"] = None
    if all(m is not None for m in moments):
        merged["moments"] = views.Moments()
        for part in moments:
            merged["moments"].merge(part)
    checks = [s.get("check") for s in states]
    merged["check"] = check_module.merge(checks) if all(checks) else None
    partly = [p for p, c in zip(paths, checks) if c is None]
    if merged["check"] is None and len(partly) < len(paths):
        notes.append(f"--check: {partly[0]} was run without it, so the merged result has no check")
    merged["warnings"] = list(dict.fromkeys(w for s in states for w in s.get("warnings", [])))
    merged["warnings"] += notes
    return merged


def _nan_or(pick, values: list[float]) -> float:
    return math.nan if any(math.isnan(v) for v in values) else pick(values)


def to_result(state: dict, by_class: bool = False, top: int = 0, hist: bool = False):
    """The Result of the run a state stands for: value, gradient summary, inputs, the
    standard error, and the per-class rows, top rows and histogram where asked."""
    from functools import partial

    import numpy as np

    from losscli import views
    from losscli.engine import scaled_as_stored
    from losscli.errors import OptionError
    from losscli.registry import get_spec
    from losscli.result import Result

    spec = get_spec(state["loss"])
    total, denominator = state["sum"], state["denominator"]
    mean = denominator is not None
    value = (total / denominator if denominator else math.nan) if mean else total
    factor = (1.0 / denominator if denominator else 0.0) if mean else 1.0
    summary = {}
    # The min and max as a run's gradient arrays hold them (float32 unless float64).
    stored = partial(scaled_as_stored, np.float64 if state["dtype"] == "float64" else np.float32)
    for name, part in state["gradient"].items():
        count = part["count"]
        summary[name] = {
            "shape": state["inputs"][name]["shape"],
            "norm": math.sqrt(part["sum_squares"]) * factor,
            "mean": part["sum"] * factor / count if count else math.nan,
            "min": stored(factor, part["min"]) if count else math.nan,
            "max": stored(factor, part["max"]) if count else math.nan,
        }
    inputs = {
        name: {
            "source": ", ".join(map(str, info["sources"])),
            "shape": info["shape"],
            "read_as": str(info.get("read_as", "values")),
            "shards": len(info["sources"]),
        }
        for name, info in state["inputs"].items()
    }
    result = Result(
        loss=spec.name,
        torch_class=spec.torch_class,
        value=value,
        reduction=state["reduction"],
        options=state["options"],
        device=state.get("device", "cpu"),
        dtype=state["dtype"],
        inputs=inputs,
        gradients=None,
        gradient_summary=summary or None,
        warnings=list(state.get("warnings", [])),
        total=total,
        denominator=denominator if mean else math.nan,
        per_sample_total=state["inputs"][spec.inputs[0].name]["shape"][0]
        if state["inputs"][spec.inputs[0].name]["shape"]
        else 1,
    )
    moments = state.get("moments")
    if moments is None:  # a state without them: from the sum of squares
        n = denominator if denominator else 0
        mean = total / n if n else math.nan
        m2 = state["sum_squares"] - n * mean * mean if n else math.nan
        moments = views.Moments(int(n) if n == n else 0, mean, m2)
    result.uncertainty = views.uncertainty(
        moments, state["reduction"], state["options"], spec.mean_scale is not None
    )
    result.language_model = views.language_model(spec, state["reduction"], value)
    if by_class:
        if state.get("per_class") is None:
            raise OptionError("--by-class: these states have no per-class sums (no class targets)")
        per_class = state["per_class"]
        result.by_class = views.by_class(
            per_class["sums"], per_class["counts"], state.get("class_names")
        )
    if state.get("groups") is not None:
        groups = views.Groups()
        groups.merge(state["groups"]["sums"], state["groups"]["counts"])
        result.by_group, result.group_by = views.by_group(groups), state["groups"]["column"]
    if state.get("check") is not None:
        from losscli.check import report

        result.check = report(state["check"], value, state["dtype"], result.device)
        for message in result.check.pop("warnings"):
            if message not in result.warnings:
                result.warnings.append(message)
    if hist:
        if state.get("hist") is None:
            raise OptionError("--hist: these states have no histogram (written before --hist)")
        result.hist = state["hist"].histogram()
    if top:
        kept = state.get("top")
        if kept is None:
            raise OptionError("--top: these states keep no top rows")
        if top > kept["k"]:
            result.warnings.append(
                f"--top {top}: the states keep the top {kept['k']} rows (run them with "
                f"--top {top} to keep more); showing {kept['k']}"
            )
        result.top = views.name_classes(kept["rows"][:top], state.get("class_names"))
    return result
