"""The invariants of a state: relations between its fields that every real run's state
satisfies (each view's are in its module, ``View.check``), and the JSON numbers no run
writes. ``losscli.state`` calls them once each field has passed the schema, so that
``merge`` never prints numbers from a state that no run could have written."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from losscli.errors import InputError
from losscli.views import shown

# ------------------------------------------------------------------ the invariants
#
# Fields that each pass the schema can still contradict each other; ``check`` refuses a
# state that breaks a relation every real run's state satisfies (each view's in its
# ``View.check``), so that ``merge`` never prints numbers from a state no run wrote.

# How a run says it read its targets (``assemble.READ_AS``, and what a loss says of them).
TARGET_KINDS = ("class indices", "class names, mapped to indices", "class probabilities",
                "class indices, -1 padded", "padded rows", "concatenated")  # fmt: skip
CLASS_INDICES = ("class indices", "class names, mapped to indices")
# The devices a run writes (torch's names: cuda with its index).
DEVICE = re.compile(r"cpu|cuda(:\d+)?|mps(:\d+)?")


def classes(spec, core: dict) -> int | None:
    """The class count of a state of a class loss (its targets class indices): the
    predictions' class axis; None for other states."""
    if "ignore_index" not in core["options"] or core["inputs"]["targets"]["read_as"] not in (
        CLASS_INDICES
    ):
        return None
    shape = core["inputs"][spec.inputs[0].name]["shape"]
    return shape[1] if len(shape) >= 2 else (shape[0] if shape else None)


def samples(core: dict) -> int | None:
    """The count of samples (not ignored targets), where the state keeps its moments."""
    moments = core.get("moments")
    return None if moments is None else moments.count


def check(path: str, spec, core: dict) -> None:
    """The invariants of the core: read_as, counts and shapes, rows, the denominator, the
    weights and the class names (InputError ``PATH: FIELD: what is wrong``)."""
    from losscli.assemble import READ_AS

    device = core.get("device", "cpu")
    if not (isinstance(device, str) and DEVICE.fullmatch(device)):
        raise InputError(f"{path}: device: {shown(device)} is not a device a run names "
                         "(cpu, cuda:N, mps)")  # fmt: skip
    first = core["inputs"][spec.inputs[0].name]
    sizes = {name: math.prod(info["shape"]) for name, info in core["inputs"].items()}
    roles = {i.name: i.role for i in spec.inputs}
    for name, info in core["inputs"].items():
        field = f"inputs.{name}"
        kinds = {"values", READ_AS[roles[name]], *(TARGET_KINDS if name == "targets" else ())}
        if info["read_as"] not in kinds:
            raise InputError(f"{path}: {field}.read_as: {shown(info['read_as'])} is not what "
                             f"a run writes ({', '.join(sorted(kinds))})")  # fmt: skip
        if info["read_as"] == "class probabilities" and info["shape"] != first["shape"]:
            raise InputError(f"{path}: {field}.shape: class probabilities of shape {info['shape']}"
                             f", where the predictions have {first['shape']}")  # fmt: skip
        rows = info.get("rows")
        if rows is None:
            continue
        stdin = "-" in info["sources"]
        if not rows and not stdin:
            raise InputError(f"{path}: {field}.rows: empty, where its sources are files")
        length = info["shape"][0] if info["shape"] else 1
        total = sum(r["count"] for r in rows)
        if total > length or (total != length and not stdin):
            raise InputError(f"{path}: {field}.rows: {total} rows in all, where its shape "
                             f"{info['shape']} has {length}")  # fmt: skip
    largest = max(sizes.values())
    count = core["count"]
    if count > largest or (count == 0 and math.prod(first["shape"])):
        raise InputError(f"{path}: count: {count} loss elements, where the largest input has "
                         f"{largest} elements")  # fmt: skip
    n = classes(spec, core)
    weight = core["options"].get("weight")
    if n is not None and weight is not None and len(weight) != n:
        raise InputError(f"{path}: options.weight: {len(weight)} entries, but the predictions "
                         f"have {n} classes")  # fmt: skip
    names = core.get("class_names")
    if names is not None:
        if len(set(names)) != len(names):
            twice = next(name for name in names if names.count(name) > 1)
            raise InputError(f"{path}: class_names: {shown(twice)} is there twice")
        if n is not None and len(names) != n:
            raise InputError(f"{path}: class_names: {len(names)} names of {n} classes")
    _check_denominator(path, spec, core, n)


def _check_denominator(path: str, spec, core: dict, n: int | None) -> None:
    """A mean's denominator as the run's would be: the batch size (batchmean), the count
    (or total weight) of the samples (class losses), else the count of loss elements."""
    denominator = core["denominator"]
    if denominator is None:
        return
    first = core["inputs"][spec.inputs[0].name]["shape"]
    weight = core["options"].get("weight") if n is not None else None
    kept = samples(core)
    if core["reduction"] == "batchmean":
        expected, why = (first[0] if first else 1), "the batch size"
    elif n is not None and weight is None:
        expected, why = kept, "the count of samples (moments.count)"
        if kept is None:  # a state without moments: at most the count
            expected = denominator if denominator <= core["count"] else core["count"]
    elif n is not None:  # a total of the samples' weights (not ignored targets)
        count = core["count"] if kept is None else kept
        extremes = (min(weight), max(weight)) if kept is not None else (0.0, *weight)
        low, high = count * min(extremes), count * max(extremes)
        slack = 1e-9 * max(abs(low), abs(high)) + 1e-12
        if math.isfinite(denominator) and low - slack <= denominator <= high + slack:
            return
        raise InputError(f"{path}: denominator: {denominator!r} is not a total of {count} "
                         f"weights from {min(weight)!r} to {max(weight)!r}")  # fmt: skip
    else:
        expected, why = core["count"], "the count of loss elements"
    if denominator != expected:
        raise InputError(f"{path}: denominator: {denominator!r}, where {why} is {expected}")


class Unreadable:
    """A JSON number no run writes and no float64 or count holds: a bare NaN or Infinity
    (not JSON; a run writes "nan", "inf", "-inf"), a float beyond float64 (1e400), an
    integer too long to convert. ``load`` names the field it is in."""

    def __init__(self, why: str) -> None:
        self.why = why

    @classmethod
    def constant(cls, text: str) -> Unreadable:
        spelled = {"NaN": "nan", "Infinity": "inf", "-Infinity": "-inf"}[text]
        return cls(f"{text} is not JSON (a run writes {json.dumps(spelled)})")

    @classmethod
    def real(cls, text: str) -> float | Unreadable:
        value = float(text)
        if math.isinf(value):
            shown = text if len(text) <= 30 else f"{text[:20]}..."
            return cls(f"{shown} is beyond the float64 range (a run writes a float64)")
        return value

    @classmethod
    def integer(cls, text: str) -> int | Unreadable:
        try:
            return int(text)
        except ValueError:  # more digits than Python converts
            return cls(f"an integer of {len(text.lstrip('-'))} digits is not what a run writes")


def unreadable(value: Any, field_name) -> tuple[str, Unreadable] | None:
    """The first Unreadable in a parsed state, and its field (``field_name(parent, key)``
    names an entry)."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        field, value = stack.pop()
        if isinstance(value, Unreadable):
            return field, value
        if isinstance(value, dict):
            items = [(field_name(field, str(k)), v) for k, v in value.items()]
        elif isinstance(value, list):
            items = [(f"{field}[{i}]", v) for i, v in enumerate(value)]
        else:
            continue
        stack.extend(reversed(items))
    return None


def refuse_repeated(paths: list[str], states: list[dict], plain) -> None:
    """Refuse two states whose rows would count twice: states of the same content (a
    copy), or states that, for every input, cover rows of the same source (the same file,
    not modified since) that overlap. States without rows (version 1, stdin) are compared
    by content only. ``plain``: a state as JSON writes it."""

    def content(state: dict) -> str:
        return json.dumps(plain(state), sort_keys=True)

    seen: dict[str, str] = {}
    for path, state in zip(paths, states):
        seen.setdefault(content(state), path)
        if seen[content(state)] != path:
            raise InputError(
                f"states cannot be merged: {seen[content(state)]} and {path} hold the same "
                "state (a copy: its rows would count twice)"
            )
    names = list(states[0]["inputs"])
    spans: dict[tuple, list] = {}  # (input, source, modified) -> [(start, stop, state)]
    shown: dict[tuple, str] = {}  # (input, source) -> its path as the first state names it
    for index, state in enumerate(states):
        for name in names:
            for r in state["inputs"][name].get("rows") or []:
                if r["count"]:
                    same = r["path"]  # hard links to one file: one (device, inode)
                    if r.get("inode") is not None and r.get("device") is not None:
                        same = (r["device"], r["inode"])
                    shown.setdefault((name, same), r["path"])
                    key = (name, same, r["modified"])
                    spans.setdefault(key, []).append((r["start"], r["start"] + r["count"], index))
    overlaps: dict[str, dict] = {name: {} for name in names}  # (i, j) -> (source, start, stop)
    for (name, same, _), items in spans.items():
        source = shown[(name, same)]
        active: list[tuple[int, int, int]] = []
        for start, stop, index in sorted(items):
            active = [a for a in active if a[1] > start]
            for other_start, other_stop, other in active:
                if other != index:
                    pair = (min(other, index), max(other, index))
                    where = (source, max(start, other_start), min(stop, other_stop))
                    overlaps[name].setdefault(pair, where)
            active.append((start, stop, index))
    both = set.intersection(*(set(found) for found in overlaps.values()))
    if both:
        first, second = min(both)
        source, start, stop = overlaps[names[0]][(first, second)]
        raise InputError(
            f"states cannot be merged: {paths[first]} and {paths[second]} both cover rows "
            f"{start}:{stop} of {source} (they would count twice)"
        )
