"""Checks on the CPU, in NumPy, that run before torch sees any input.

Each loss's ``prepare`` function uses these helpers to turn the arrays as read into the
arrays torch needs, raising InputError or OptionError with a message that names the input,
the place and what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from losscli.errors import InputError, OptionError
from losscli.io import InputArray
from losscli.io.text import is_number, to_number

# The smallest magnitude that rounds to inf in each compute dtype narrower than float64.
OVERFLOW_AT = {
    "float16": 65520.0,
    "bfloat16": 3.3961775292304601e38,
    "float32": 3.4028235677973366e38,
}
CHECK_BLOCK = 1 << 20


@dataclass
class Context:
    """What validation needs besides the inputs: user choices and the warnings it collects."""

    reduction: str = "mean"
    allow_nonfinite: bool = False
    classes: list[str] | None = None
    dtype: str = "float32"
    # --from converted the predictions: they are log-probabilities by construction (their
    # row sums are judged before the conversion, by losscli.convert).
    converted: bool = False
    warnings: list[str] = field(default_factory=list)
    # Facts about the whole input gathered block by block: key -> (fact, render).
    facts: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    # Notes about inputs said as one line: detail -> the labels of the inputs it concerns.
    noted: dict[str, list[str]] = field(default_factory=dict)

    def warn(self, message: str) -> None:
        """A warning, said once however many blocks of rows give it; a ``Note`` about an
        input joins the one of other inputs with the same detail into one line."""
        detail = getattr(message, "detail", None)
        if detail is not None:
            labels = self.noted.setdefault(detail, [])
            if message.label in labels:
                return
            labels.append(message.label)
            joined = f"{', '.join(labels)}: {detail}"
            if len(labels) > 1:
                self.warnings[self.warnings.index(f"{', '.join(labels[:-1])}: {detail}")] = joined
                return
            message = joined
        if message not in self.warnings:
            self.warnings.append(message)

    def gather(self, key: str, fact: tuple, render, first_wins: int = 0) -> None:
        """A warning about the whole input, built from one fact per block of rows: the facts
        of every block are summed element by element (the first ``first_wins`` elements keep
        the first block's value: a position), and ``render(fact)`` gives the message, or
        None, once every block has been seen (``finish``)."""
        if key in self.facts:
            known = self.facts[key][0]
            fact = known[:first_wins] + tuple(
                a + b for a, b in zip(known[first_wins:], fact[first_wins:])
            )
        self.facts[key] = (fact, render)

    def finish(self) -> None:
        """Say the warnings gathered from every block (see ``gather``)."""
        for fact, render in self.facts.values():
            message = render(fact)
            if message:
                self.warn(message)
        self.facts.clear()


@dataclass
class Prepared:
    """Inputs ready for torch (float arrays, int64 indices), and how the targets were read."""

    arrays: dict[str, np.ndarray]
    options: dict[str, Any]
    targets_kind: str | None = None
    # Array options that follow the rows of the inputs (sliced with them into chunks).
    row_options: set[str] = field(default_factory=set)


def shown(value) -> str:
    """A value from an array as the user wrote it (``2.0`` and ``'cat'``, not
    ``np.float64(2.0)`` and ``np.str_('cat')``)."""
    value = value.item() if hasattr(value, "item") else value
    return repr(str(value) if isinstance(value, str) else value)


def describe(name: str, inp: InputArray) -> str:
    return f"{name} ({inp.source})"


def check_finite(name: str, inp: InputArray, ctx: Context) -> None:
    """Refuse NaN/inf (count and first position), or warn when --allow-nonfinite is set."""
    array = inp.array
    if array.dtype.kind != "f":
        return
    extremes = inp.extremes()  # NaN or inf anywhere shows in the min or the max
    if extremes is None or np.isfinite(extremes).all():
        return
    finite = np.isfinite(array)
    if finite.all():
        return
    bad = np.argwhere(~finite)
    _nonfinite(
        f"{describe(name, inp)}: ",
        "NaN/inf value(s)",
        f"first at {inp.where(tuple(bad[0]))}",
        len(bad),
        ctx,
        "fix the data or pass --allow-nonfinite",
        "let through by --allow-nonfinite",
    )


def _nonfinite(prefix, what, first, count, ctx: Context, refused: str, allowed: str) -> None:
    """Refuse values that are not finite, naming the first (an error stops at the first block
    that has one, so it gives no count); with --allow-nonfinite, warn with the count over
    every block."""
    if not ctx.allow_nonfinite:
        raise InputError(f"{prefix}{what}, {first}; {refused}")
    ctx.gather(
        prefix + what, (first, count), lambda f: f"{prefix}{f[1]} {what}, {f[0]}; {allowed}", 1
    )


def check_representable(name: str, inp: InputArray, ctx: Context) -> None:
    """Refuse finite values that the compute dtype turns into inf (1e39 in float32, 1e5 in
    float16), like NaN/inf; --allow-nonfinite lets them through as inf, with a warning."""
    limit = OVERFLOW_AT.get(ctx.dtype)
    array = inp.array
    if limit is None or array.dtype.kind not in "iuf" or array.size == 0:
        return
    info = np.finfo(array.dtype) if array.dtype.kind == "f" else np.iinfo(array.dtype)
    if max(abs(float(info.min)), float(info.max)) < limit:
        return  # every value of this dtype fits
    with np.errstate(over="ignore"):  # what the engine hands torch: float32 first
        low, high = np.abs(np.asarray(inp.extremes(), dtype=np.float32)).astype(np.float64)
    if low < limit and high < limit:
        return  # the min and max fit (and are not NaN), so every value does
    over = _rounds_to_inf(array, limit)
    if not over.any():
        return
    bad = np.argwhere(over)
    where = tuple(bad[0])
    _nonfinite(
        f"{describe(name, inp)}: ",
        f"value(s) that {ctx.dtype} cannot hold (it rounds them to inf)",
        f"first {shown(array[where])} at {inp.where(where)}",
        len(bad),
        ctx,
        "use a wider --dtype, or pass --allow-nonfinite",
        "let through as inf by --allow-nonfinite",
    )


def _rounds_to_inf(array: np.ndarray, limit: float) -> np.ndarray:
    """Where a finite value becomes inf on its way to the compute dtype: the engine hands
    torch float32, so a value is first rounded to float32 (which can carry one just below
    ``limit`` up to it), then to the compute dtype. Checked in blocks, without a full copy."""
    flat = array.reshape(-1)
    over = np.zeros(flat.size, dtype=bool)
    with np.errstate(over="ignore", invalid="ignore"):
        for start in range(0, flat.size, CHECK_BLOCK):
            part = flat[start : start + CHECK_BLOCK]
            as_float32 = np.abs(part.astype(np.float32))
            finite = np.isfinite(part) if part.dtype.kind == "f" else True
            over[start : start + len(part)] = finite & (as_float32 >= limit)
    return over.reshape(array.shape)


def same_shape(
    first: tuple[str, InputArray], second: tuple[str, InputArray], accepts: str, ctx: Context
) -> np.ndarray:
    """``second``'s array in ``first``'s shape; (N,1) and (N,) count as the same, with a warning."""
    (name_a, a), (name_b, b) = first, second
    if a.array.shape == b.array.shape:
        return b.array
    shapes = {a.array.shape, b.array.shape}
    n = a.array.shape[0] if a.array.ndim else None
    if a.array.ndim and shapes == {(n,), (n, 1)}:
        ctx.warn(f"{name_b} shape {b.shape} treated as {a.shape} to match {name_a}")
        return b.array.reshape(a.array.shape)
    raise shape_error(first, second, accepts)


SAME_SHAPE = "it accepts predictions and targets of the same shape"


def shape_error(a: tuple[str, InputArray], b: tuple[str, InputArray], accepts: str) -> InputError:
    """The error for two inputs whose shapes this loss cannot pair."""
    (name_a, inp_a), (name_b, inp_b) = a, b
    return InputError(
        f"shapes do not match: {describe(name_a, inp_a)} is {inp_a.shape}, "
        f"{describe(name_b, inp_b)} is {inp_b.shape}; {accepts}" + header_hint(inp_a, inp_b)
    )


def prepare_same_shape(inputs, options, ctx: Context) -> Prepared:
    """Predictions and targets, both finite, of one shape ((N,1) and (N,) count as one)."""
    preds, targets = inputs["predictions"], inputs["targets"]
    check_finite("predictions", preds, ctx)
    check_finite("targets", targets, ctx)
    target_array = same_shape(("predictions", preds), ("targets", targets), SAME_SHAPE, ctx)
    return Prepared({"predictions": preds.array, "targets": target_array}, dict(options))


def prepare_sign_targets(inputs, options, ctx: Context) -> Prepared:
    """Predictions and +1/-1 targets of one shape."""
    preds, targets = inputs["predictions"], inputs["targets"]
    check_finite("predictions", preds, ctx)
    shaped = same_shape(("predictions", preds), ("targets", targets), SAME_SHAPE, ctx)
    labels = sign_labels("target", targets.with_array(shaped))
    return Prepared({"predictions": preds.array, "targets": labels}, dict(options))


def probability_targets(inputs, ctx: Context, loss: str) -> np.ndarray:
    """Finite predictions and targets of one shape, targets in [0, 1] (bce, bce-logits)."""
    preds, targets = inputs["predictions"], inputs["targets"]
    check_finite("predictions", preds, ctx)
    check_finite("targets", targets, ctx)
    shaped = same_shape(("predictions", preds), ("targets", targets), SAME_SHAPE, ctx)
    in_unit_interval(
        "target", targets.with_array(shaped), f"{loss} targets are probabilities in [0, 1]"
    )
    return shaped


def element_weight(option: str, weight: np.ndarray | None, shape: tuple[int, ...]):
    """A per-element --weight that broadcasts to ``shape``: one per column, or one per row of
    1-D predictions. Returns (weight, whether it follows the rows)."""
    if weight is None:
        return None, False
    per_row = len(shape) == 1 and len(weight) == shape[0] and shape[0] != 1
    trailing = shape[-1] if shape else 1
    if per_row or len(weight) in (1, trailing):
        return weight, per_row
    raise OptionError(
        f"{option} has {len(weight)} entries; for predictions of shape {list(shape)} it needs "
        f"1 or {trailing} (one per column)" + (" or one per row" if len(shape) == 1 else "")
    )


def header_hint(a: InputArray, b: InputArray) -> str:
    """When one text input has exactly one row more, its first line may be a header of
    numbers (pandas writes ``0`` above a Series): say how to read it as one."""
    if not (a.array.ndim and b.array.ndim):
        return ""
    rows_a, rows_b = a.array.shape[0], b.array.shape[0]
    longer = a if rows_a > rows_b else b
    if abs(rows_a - rows_b) != 1 or longer.info.get("header") is not False:
        return ""
    name = longer.source.split("[")[0]
    return f" (if line 1 of {name} is a header, write {name}?header=yes)"


def class_indices(
    name: str,
    inp: InputArray,
    num_classes: int,
    ctx: Context,
    ignore_index: int | None = None,
    class_names: list[str] | None = None,
) -> np.ndarray:
    """Targets as int64 class indices in [0, num_classes), or ``ignore_index``.

    Names are mapped through ``--classes`` or, failing that, ``class_names`` (the
    predictions' header); integral floats such as ``3.0`` are accepted.
    """
    array = inp.array
    valid = f"valid: 0..{num_classes - 1}" + (
        f" or the ignore index {ignore_index}" if ignore_index is not None else ""
    )
    if array.dtype.kind in "OUS":
        array = _names_to_indices(name, inp, ctx.classes or class_names)
    elif array.dtype.kind == "f":
        integral = np.equal(np.floor(array), array)
        if not integral.all():
            where = tuple(np.argwhere(~integral)[0])
            raise InputError(
                f"{inp.where(where)}: {name} value {shown(array[where])} is not a class index "
                f"(an integer); {valid}"
            )
    if ctx.classes and inp.array.dtype.kind not in "OUS":
        note = f"--classes is not used: {name}s in {inp.source} are numbers, read as class indices"
        if note not in ctx.warnings:
            ctx.warn(note)
    # Range checks on the values as read, before any cast (a uint64 or a float beyond int64
    # must not wrap into a small or negative index).
    values = np.asarray(array)
    extremes = inp.extremes() if values is inp.array else None
    if extremes is None or extremes[0] < 0 or extremes[1] >= num_classes:
        bad = (values < 0) | (values >= num_classes)
        if ignore_index is not None:
            bad &= values != ignore_index
        if bad.any():
            where = tuple(np.argwhere(bad)[0])
            raise InputError(
                f"{inp.where(where)}: class index {shown(values[where])} is out of range; {valid}"
            )
    return values.astype(np.int64, copy=False)


def _names_to_indices(name: str, inp: InputArray, known: list[str] | None) -> np.ndarray:
    cells = inp.array.astype(str)
    numeric = np.char.strip(cells)
    lookup = {c: i for i, c in enumerate(known or [])}
    out = np.empty(cells.shape, dtype=np.float64)
    for index, cell in np.ndenumerate(numeric):
        cell = str(cell)
        if cell in lookup:
            out[index] = lookup[cell]
            continue
        try:
            if not is_number(cell):
                raise ValueError(cell)
            out[index] = to_number(cell)
        except ValueError:
            if not known:
                raise InputError(
                    f"{inp.where(index)}: {name} {cell!r} is a class name, but no classes are "
                    "known; pass --classes a,b,c or give the predictions a header of class names"
                ) from None
            hint = ""
            if index[0] + inp.row_offset == 0 and inp.info.get("header") is False:
                name_of_file = inp.source.split("[")[0]
                hint = f" (if line 1 is a header, write {name_of_file}?header=yes)"
            raise InputError(
                f"{inp.where(index)}: class name {cell!r} is not a known class; known: "
                f"{', '.join(map(repr, known))}{hint}"
            ) from None
    if not np.equal(np.floor(out), out).all():
        where = tuple(np.argwhere(np.floor(out) != out)[0])
        raise InputError(
            f"{inp.where(where)}: {name} value {shown(out[where])} is not a class index"
        )
    return out


def in_unit_interval(name: str, inp: InputArray, hint: str) -> None:
    """Refuse values outside [0, 1], naming the first offending row."""
    array = inp.array
    if inp.within(0, 1):
        return  # the min and max, no arrays of flags, where every value is in range
    outside = (array < 0) | (array > 1)
    if outside.any():
        where = tuple(np.argwhere(outside)[0])
        raise InputError(
            f"{inp.where(where)}: {name} value {shown(array[where])} is outside [0, 1]; {hint}"
        )


def vector_length(option: str, vector: np.ndarray | None, expected: int, what: str) -> None:
    """Refuse a --weight whose length is not the number of classes."""
    if vector is not None and len(vector) != expected:
        raise OptionError(
            f"{option} has {len(vector)} entries, but the predictions have {expected} {what}"
        )


def sign_labels(name: str, inp: InputArray) -> np.ndarray:
    """Targets that must be +1 or -1, as floats; the first other value is an error."""
    array = inp.array
    if array.dtype.kind in "OUS":
        raise InputError(f"{inp.source}: {name} must be numbers +1 or -1, not names")
    bad = (array != 1) & (array != -1)
    if bad.any():
        where = tuple(np.argwhere(bad)[0])
        raise InputError(f"{inp.where(where)}: {name} value {shown(array[where])} is not +1 or -1")
    return array


def at_least(name: str, inp: InputArray, low: float, hint: str, strict: bool = False) -> None:
    """Refuse values below ``low`` (or not above it, when ``strict``)."""
    array = inp.array
    bad = array <= low if strict else array < low
    if bad.any():
        where = tuple(np.argwhere(bad)[0])
        relation = ">" if strict else ">="
        raise InputError(
            f"{inp.where(where)}: {name} value {shown(array[where])} is not {relation} {low}; "
            f"{hint}"
        )


def sum_tolerance(probabilities) -> float:
    """How far from 1 rows of probabilities may sum: 1e-4, or what rounding to the decimals
    written explains (probabilities rounded to 2 decimals sum to 1 only within C * 0.005)."""
    scores = np.asarray(probabilities, dtype=np.float64)
    for decimals in (2, 3):
        scaled = scores * 10**decimals
        if np.allclose(scaled, np.round(scaled), atol=1e-6 * 10**decimals):
            return max(1e-4, scores.shape[1] * 0.5 * 10.0**-decimals)
    return 1e-4


def not_log_probabilities(array: np.ndarray, axis: int = 1) -> str | None:
    """Why ``array`` is not log-probabilities along ``axis`` (None when it is)."""
    if array.size == 0:
        return None
    if array.max() > 1e-6:
        return "positive values"
    top = array.max(axis=axis, keepdims=True)
    with np.errstate(invalid="ignore"):
        lse = np.log(np.exp(array - top).sum(axis=axis, keepdims=True)) + top
    if not np.allclose(lse[np.isfinite(lse)], 0.0, atol=1e-3):
        return "rows whose logsumexp is not 0"
    return None


def warn_unless_log_probabilities(
    ctx: Context,
    array: np.ndarray,
    axis: int,
    message: str,
    rows: bool = True,
    predictions: bool = True,
):
    """Warn with ``message`` (its ``{reason}`` filled in) when ``array`` is not
    log-probabilities along ``axis``, judged over every block of rows: positive values in
    any block come first, as in one look at the whole array. ``rows=False`` checks only the
    values (a 1-D distribution split into blocks has no whole row in any of them)."""
    if ctx.converted and predictions:  # --from made them log-probabilities
        return
    reason = not_log_probabilities(array, axis) if rows else None
    if not rows and array.size and array.max() > 1e-6:
        reason = "positive values"
    reasons = ("positive values", "rows whose logsumexp is not 0")
    ctx.gather(
        message,
        tuple(int(reason == r) for r in reasons),
        lambda fact: any(fact) and message.format(reason=reasons[0] if fact[0] else reasons[1]),
    )


def require_2d(name: str, inp: InputArray, what: str) -> None:
    """Refuse an input that is not a 2-D (N,C) or (N,D) table."""
    if inp.array.ndim != 2:
        raise InputError(f"{name} ({inp.source}) have shape {inp.shape}; {what}")
