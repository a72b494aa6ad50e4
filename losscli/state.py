"""Mergeable state: what a run over some rows keeps, so that runs over parts of the rows
combine into the result of one run over all of them (``--emit-state``, ``losscli merge``).

A state is JSON. It holds the loss, its options, reduction and dtype; the float64 sum and
denominator of the loss; the count and sum of squares of the unreduced loss (torch's
``reduction="none"`` elements); for each gradient, the count, sum, sum of squares, min and
max of the gradient of the *sum* (the factor 1/denominator is applied once the states are
merged); the shape, source and rows of every input; and each view's part (``losscli.views``:
its Struct, checked, loaded, merged and dumped by the view). Every number is a float64
written with 17 significant digits, so a state read back is the state written.
"""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any

import msgspec

from losscli.errors import InputError
from losscli.views import Count, Number
from losscli.views import Part as _Part

FORMAT = "losscli-state"
# Version 2 adds each input's rows (source, first row, row count); version 1 is still read.
VERSION = 2
READ_VERSIONS = (1, 2)


def _number(value: float) -> float | str:
    from losscli.views import number

    return number(value)


def build(
    result,
    block_run,
    gradient_stats: dict,
    sources: dict[str, list[str]],
    parts: dict[str, Any],
    warnings: list[str],
    class_names: list[str] | None,
) -> dict:
    """The state of a finished run (its Result, its engine, its gradient partials, the
    accumulators of its views, the warnings of its core): the core as JSON, each view's
    part as its accumulator (``dumps`` writes them)."""
    from losscli import views
    from losscli.values import plain

    state = {
        "format": FORMAT,
        "version": VERSION,
        "loss": result.loss,
        "torch": result.torch_class,
        "reduction": result.reduction,
        "options": plain(result.options),
        "dtype": result.dtype,
        "device": result.device,
        "sum": _number(block_run.total),
        "denominator": _number(block_run.denominator) if block_run.mean else None,
        "count": block_run.count,
        "sum_squares": _number(block_run.squares),
        "gradient": {
            name: {
                "count": stats.count,
                "sum": _number(stats.total),
                "sum_squares": _number(stats.squares),
                "min": _number(stats.low),
                "max": _number(stats.high),
                "scale": stats.scale,
            }
            for name, stats in gradient_stats.items()
        },
        "inputs": {
            name: {"shape": info["shape"], "sources": sources[name], "read_as": info["read_as"]}
            for name, info in result.inputs.items()
        },
        "warnings": list(warnings),
        "class_names": class_names,
    }
    for view in views.all_views():
        if view.State is not None:
            state[view.key] = parts.get(view.key)
    return state


def record_rows(state: dict, args: dict) -> None:
    """Write into ``state`` the rows each input was read from (``args``: input name ->
    the parsed source argument): the source (for a local file its real path and
    modification time), the first row (``rows=START:STOP``, or the rows of the Parquet
    row groups before ``row_group=G``) and the row count. Stdin has none."""
    import os

    from losscli.io.sources import STDIN, is_url

    for name, info in state["inputs"].items():
        arg = args[name]
        if arg.path == STDIN:
            info["rows"] = []
            continue
        local = not is_url(arg.path)
        where = os.path.realpath(arg.path) if local else arg.path
        device = inode = None
        try:
            status = os.stat(where) if local else None
        except OSError:
            status = None  # a pattern of files
        modified = status.st_mtime_ns if status else None
        if status and arg.key is None:
            device, inode = status.st_dev, status.st_ino
        start = 0
        if arg.options.rows is not None:
            start = arg.options.rows[0]
        elif arg.options.row_group:
            import pyarrow.parquet as pq

            metadata = pq.ParquetFile(arg.path).metadata
            start = sum(metadata.row_group(g).num_rows for g in range(arg.options.row_group))
        path = where if arg.key is None else f"{where}:{arg.key}"
        count = info["shape"][0] if info["shape"] else 1
        row = {"path": path, "start": start, "count": count, "modified": modified}
        info["rows"] = [row if inode is None else {**row, "device": device, "inode": inode}]


def dumps(state: dict) -> str:
    """A state as the JSON text of a state file."""
    return json.dumps(plain(state), indent=1) + "\n"


def plain(state: dict) -> dict:
    """A state as JSON values: each view's part as its ``dump`` gives it."""
    from losscli import views

    parts = {v.key for v in views.all_views() if v.State is not None}
    core = {k: v for k, v in state.items() if k not in parts}
    return {**core, **views.dump(state)}


# ------------------------------------------------------------------ the schema
#
# One Struct per part of a state, decoded strictly (no unknown fields, no strings for
# numbers, no booleans for counts); what the types cannot say (the loss and its options,
# reductions, input names, shapes that agree) is checked against the registry afterwards.
# Maps keyed by names a run chooses (inputs, gradients, options, histogram buckets, groups)
# are decoded entry by entry, so that a message names the entry.


class GradientPartial(_Part):
    """The gradient of ``scale`` times the sum, over one input: its element count, sum, sum
    of squares, min and max (``scale``: the factor the run computed it with; 1.0 in states
    written before it was recorded)."""

    count: Count
    sum: Number
    sum_squares: Number
    min: Number
    max: Number
    scale: Annotated[float, msgspec.Meta(gt=0)] = 1.0


class RowRange(_Part):
    """Rows ``[start, start + count)`` of one source (a file, a folder or a URL; for a local
    one its real path and modification time in ns), as far as a run read it."""

    path: str
    start: Count
    count: Count
    modified: int | None = None
    # A local file's device and inode, where the run wrote them: hard links are one source.
    device: int | None = None
    inode: int | None = None


class Input(_Part):
    """One input: its shape, its sources as named, how it was read, and its rows."""

    shape: list[Count]
    sources: list[str]
    read_as: str = "values"
    rows: list[RowRange] | None = None  # from version 2


class Core(_Part, kw_only=True):
    """The core of a state: the loss and how it was run, its sums and counts; the parts
    of the views are decoded on their own (``parts``)."""

    format: str
    version: int
    loss: str
    torch: str
    reduction: str
    options: dict[str, Any]
    dtype: str
    device: str = "cpu"
    sum: Number
    denominator: Number | None
    count: Count
    sum_squares: Number
    gradient: dict[str, Any]
    inputs: dict[str, Any]
    warnings: list[str] = []
    class_names: Annotated[list[str], msgspec.Meta(min_length=1)] | None = None


def parts() -> dict[str, type]:
    """The optional parts of a state, each a view's (absent or null: the run did not keep
    it): {key: its Struct}."""
    from losscli import views

    return {v.key: v.State for v in views.all_views() if v.State is not None}


def field_name(parent: str, key: str) -> str:
    """The name of an entry in messages: ``inputs.targets``, ``hist.positive["-3"]``."""
    name = key if key.replace("_", "").isalnum() and not key[:1].isdigit() else json.dumps(key)
    if parent and not name.startswith('"'):
        return f"{parent}.{name}"
    return f"{parent}[{name}]" if parent else name


def _shown(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 40 else f"{text[:30]}..."


def _at(value: Any, steps: list) -> tuple[bool, Any]:
    """The value at ``steps`` (keys and indices) in ``value``, if there is one."""
    for step in steps:
        if isinstance(value, dict) and isinstance(step, str):
            found = step in value
        elif isinstance(value, list) and isinstance(step, int):
            found = step < len(value)
        else:
            found = False
        if not found:
            return False, None
        value = value[step]
    return True, value


def decode(path: str, raw: Any, kind: Any, field: str = ""):
    """``raw`` as ``kind``; InputError ``PATH: FIELD: what is wrong`` otherwise."""
    try:
        return msgspec.convert(raw, kind, strict=True)
    except msgspec.ValidationError as error:
        what, _, where = str(error).partition(" - at `$")
        steps = [
            int(index) if index else name
            for name, index in re.findall(r"\.(\w+)|\[(\d+)\]", where.rstrip("`"))
        ]
        name = field
        for step in steps:
            name = f"{name}[{step}]" if isinstance(step, int) else field_name(name, step)
        missing = re.match(r"Object (missing required|contains unknown) field `(.*)`", what)
        if missing:
            name = field_name(name, missing.group(2))
            if missing.group(1).startswith("missing"):
                raise InputError(f"{path}: {name}: missing (a run writes it)") from None
            raise InputError(f"{path}: {name}: not a field of a losscli state") from None
        found, value = _at(raw, steps)
        what = what.replace("`", "")
        if what.startswith("Expected int >= 0") or what.startswith("Expected int <= "):
            what = "is not a count (an integer from 0 to 2**63 - 1)"
        elif found:
            what = f"is not what a run writes here ({what[0].lower()}{what[1:]})"
        else:
            what = what[0].lower() + what[1:]
        shown = f"{_shown(value)} " if found else ""
        raise InputError(f"{path}: {name or 'the state'}: {shown}{what}") from None


def _real(path: str, field: str, value: Any) -> float:
    from losscli.views import real

    return real(path, field, value)


def _not_negative(path: str, field: str, value: float | None) -> None:
    from losscli.views import not_negative

    not_negative(path, field, value)


def load(path: str, text: bytes) -> dict:
    """A state read from ``path``, its fields checked (InputError names what is wrong)."""

    def unique_keys(pairs):
        keys = [key for key, _ in pairs]
        if len(set(keys)) != len(keys):
            twice = sorted({k for k in keys if keys.count(k) > 1})
            raise InputError(f"{path}: not a losscli state (the key {twice[0]!r} is there twice)")
        return dict(pairs)

    from losscli.state_checks import Unreadable, unreadable

    try:
        state = json.loads(
            text.decode("utf-8"),
            object_pairs_hook=unique_keys,
            parse_constant=Unreadable.constant,
            parse_float=Unreadable.real,
            parse_int=Unreadable.integer,
        )
    except (ValueError, RecursionError) as error:  # JSON, UTF-8, what the hooks missed
        raise InputError(f"{path}: not a losscli state (not JSON: {error})") from None
    found = unreadable(state, field_name)
    if found is not None:
        field, bad = found
        raise InputError(f"{path}: {field or 'the state'}: {bad.why}")
    return read(path, state)


def read(path: str, state: Any) -> dict:
    """A state as ``build`` or JSON gives it, checked against the schema and the loss
    registry, and turned into what ``merge`` and ``to_result`` take: numbers as floats, the
    sketch and moments as objects. ``path`` names it in messages."""
    from losscli import state_checks, views

    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise InputError(f"{path}: not a losscli state (written by --emit-state)")
    if state.get("version") not in READ_VERSIONS:
        raise InputError(
            f"{path}: a losscli state of version {state.get('version')!r}; this losscli reads "
            f"versions {', '.join(map(str, READ_VERSIONS))}"
        )
    kinds = parts()
    core = decode(path, {k: v for k, v in state.items() if k not in kinds}, Core)
    decoded = {
        key: None if state.get(key) is None else decode(path, state[key], kind, key)
        for key, kind in kinds.items()
    }
    spec = _check_core(path, core)
    out = msgspec.to_builtins(core)
    out["sum"], out["sum_squares"] = out.pop("sum"), out.pop("sum_squares")
    for key in ("sum", "sum_squares", "denominator"):
        if out[key] is not None:
            out[key] = _real(path, key, out[key])
    for key in ("denominator", "sum_squares"):  # sums of weights and of squares
        _not_negative(path, key, out[key])
    if out["denominator"] is None and core.reduction != "sum":
        raise InputError(f"{path}: denominator: a {core.reduction} state needs one")
    if out["denominator"] is not None and core.reduction == "sum":
        raise InputError(f"{path}: denominator: a sum state has none (it would be a mean)")
    out["inputs"] = _check_inputs(path, spec, core.inputs)
    out["gradient"] = _check_gradient(path, spec, core.gradient, out["inputs"])
    for view in views.all_views():
        if view.State is not None:
            data = decoded[view.key]
            out[view.key] = None if data is None else view.load(path, data, out)
    state_checks.check(path, spec, out)  # the invariants: fields that agree with each other
    for view in views.all_views():
        if view.State is not None and out[view.key] is not None:
            view.check(path, out[view.key], out)
    return out


def _check_core(path: str, core: Core):
    """The loss, its torch class, reduction, dtype and options, against the registry."""
    from losscli.engine import DTYPES
    from losscli.registry import FLAG, INTEGER, NUMBER, SWITCH, VECTOR, all_specs

    specs = all_specs()
    spec = specs.get(core.loss)
    if spec is None:
        raise InputError(f"{path}: loss: {_shown(core.loss)} is not a loss of losscli list")
    if core.torch != spec.torch_class:
        raise InputError(
            f"{path}: torch: {_shown(core.torch)} is not {spec.name}'s class ({spec.torch_class})"
        )
    reductions = [r for r in spec.reductions if r != "none"]
    if core.reduction not in reductions:
        why = " (reduction none has no state)" if core.reduction == "none" else ""
        raise InputError(
            f"{path}: reduction: {_shown(core.reduction)} is not a reduction of a "
            f"{spec.name} state ({', '.join(reductions)}){why}"
        )
    if core.dtype not in DTYPES:
        raise InputError(
            f"{path}: dtype: {_shown(core.dtype)} is not a --dtype ({', '.join(DTYPES)})"
        )
    known = {option.name: option for option in spec.options}
    for name in core.options:
        if name not in known:
            raise InputError(
                f"{path}: {field_name('options', name)}: not an option of {spec.name} "
                f"(its options: {', '.join(known) or 'none'})"
            )
    for name, option in known.items():
        field = field_name("options", name)
        if name not in core.options:
            raise InputError(f"{path}: {field}: missing (a run writes every option)")
        value = core.options[name]
        if option.kind in (FLAG, SWITCH):
            kind = bool
        elif option.kind == VECTOR:
            kind = Annotated[list[float], msgspec.Meta(min_length=1)] | None
        else:
            kind = {INTEGER: int, NUMBER: float}[option.kind]
        value = decode(path, value, kind, field)
        from losscli.errors import OptionError

        try:
            if option.kind == VECTOR and value is not None:
                if not all(map(math.isfinite, value)):
                    raise OptionError(f"{option.flag} has a value that is not a finite number")
                option._check_domain(min(value), max(value))
            elif option.kind != VECTOR:
                option.convert(value)
        except OptionError as error:
            raise InputError(f"{path}: {field}: {error.message}") from None
    return spec


def _check_inputs(path: str, spec, inputs: dict[str, Any]) -> dict[str, dict]:
    """Every input of the loss and no other, each an Input; first axes that agree."""
    names = spec.input_names
    for name in inputs:
        if name not in names:
            raise InputError(
                f"{path}: {field_name('inputs', name)}: not an input of {spec.name} (its inputs: "
                f"{', '.join(names)})"
            )
    out = {}
    for name in names:
        field = field_name("inputs", name)
        if name not in inputs:
            raise InputError(f"{path}: {field}: missing ({spec.name} reads {', '.join(names)})")
        info = decode(path, inputs[name], Input, field)
        if not info.sources:
            raise InputError(f"{path}: {field}.sources: empty (a run names its sources)")
        out[name] = msgspec.to_builtins(info)
    if spec.chunkable:
        rows = {n: info["shape"][0] for n, info in out.items() if info["shape"]}
        if len(set(rows.values())) > 1:
            first = next(iter(rows))
            other = next(n for n in rows if rows[n] != rows[first])
            raise InputError(
                f"{path}: {field_name('inputs', other)}.shape: {rows[other]} rows where {first} "
                f"has {rows[first]}"
            )
    return out


def _of_the_sum(part: dict[str, Any]) -> dict[str, Any]:
    """A gradient partial as the gradient of the sum (its scale divided out, in float64)."""
    scale = part["scale"]
    return {
        "count": part["count"],
        "sum": part["sum"] / scale,
        "sum_squares": part["sum_squares"] / scale**2,
        "min": part["min"] / scale,
        "max": part["max"] / scale,
        "scale": 1.0,
    }


def _check_gradient(path: str, spec, gradient: dict[str, Any], inputs: dict) -> dict:
    """Gradient partials of inputs that have gradients, counts that fit their shapes."""
    out = {}
    for name, raw in gradient.items():
        field = field_name("gradient", name)
        if name not in spec.float_inputs:
            raise InputError(
                f"{path}: {field}: {spec.name} has no gradient of {name!r} (its inputs with "
                f"gradients: {', '.join(spec.float_inputs)})"
            )
        partial = msgspec.to_builtins(decode(path, raw, GradientPartial, field))
        for key in ("sum", "sum_squares", "min", "max"):
            partial[key] = _real(path, f"{field}.{key}", partial[key])
        _not_negative(path, f"{field}.sum_squares", partial["sum_squares"])
        if partial["count"] and partial["min"] > partial["max"]:
            raise InputError(f"{path}: {field}: min > max")
        shape = inputs[name]["shape"]
        if partial["count"] != math.prod(shape):
            raise InputError(
                f"{path}: {field}.count: {partial['count']}, where an input of shape {shape} "
                f"has {math.prod(shape)} elements"
            )
        out[name] = partial
    return out


def _refuse(paths, what: str, values) -> None:
    from losscli.views import refuse_unequal

    refuse_unequal(paths, what, values)


def merge(paths: list[str], states: list[dict]) -> dict:
    """One state from states of the same loss, options, reduction and dtype over parts of the
    rows; refuses (InputError) states that do not agree."""
    from losscli import state_checks, views

    for what in ("loss", "reduction", "dtype", "options"):
        _refuse(paths, what, [s[what] for s in states])
    _refuse(paths, "inputs", [sorted(s["inputs"]) for s in states])
    for name in states[0]["inputs"]:
        tails = [s["inputs"][name]["shape"][1:] for s in states]
        _refuse(paths, f"{name} shape past the first axis", tails)
    _refuse(paths, "gradients", [sorted(s["gradient"]) for s in states])
    for view in views.all_views():
        if view.State is not None:
            view.compatible(paths, [s.get(view.key) for s in states])
    _refuse(paths, "class names", [s.get("class_names") for s in states])
    state_checks.refuse_repeated(paths, states, plain)
    merged = dict(states[0])
    merged["sum"] = views.fsum(s["sum"] for s in states)
    if merged["denominator"] is not None:
        merged["denominator"] = views.fsum(s["denominator"] for s in states)
    merged["count"] = sum(s["count"] for s in states)
    merged["sum_squares"] = views.fsum(s["sum_squares"] for s in states)
    merged["gradient"] = {}
    for name in states[0]["gradient"]:
        parts = [s["gradient"][name] for s in states]
        if len({p["scale"] for p in parts}) > 1:  # computed with other factors: of the sum
            parts = [_of_the_sum(p) for p in parts]
        merged["gradient"][name] = {
            "count": sum(p["count"] for p in parts),
            "sum": views.fsum(p["sum"] for p in parts),
            "sum_squares": views.fsum(p["sum_squares"] for p in parts),
            "min": _nan_or(min, [p["min"] for p in parts]),
            "max": _nan_or(max, [p["max"] for p in parts]),
            "scale": parts[0]["scale"],
        }
    merged["inputs"] = {}
    for name, info in states[0]["inputs"].items():
        rows = sum(s["inputs"][name]["shape"][0] for s in states) if info["shape"] else None
        merged["inputs"][name] = {
            "shape": [rows, *info["shape"][1:]] if info["shape"] else [],
            "sources": [src for s in states for src in s["inputs"][name]["sources"]],
            "read_as": info.get("read_as", "values"),
            "rows": None
            if any(s["inputs"][name].get("rows") is None for s in states)
            else [r for s in states for r in s["inputs"][name]["rows"]],
        }
    notes: list[str] = []  # what the merged result lacks because a part lacks it
    merged.update(views.merge(paths, states, notes))
    merged["warnings"] = list(dict.fromkeys(w for s in states for w in s.get("warnings", [])))
    merged["warnings"] += notes
    return merged


def _nan_or(pick, values: list[float]) -> float:
    return math.nan if any(math.isnan(v) for v in values) else pick(values)


def to_result(state: dict, asked: dict[str, Any] | None = None):
    """The Result of the run a state stands for: value, gradient summary, inputs, and what
    each view shows (``asked``: each view's option value, as ``views.asked`` gives them)."""
    from functools import partial

    import numpy as np

    from losscli import views
    from losscli.io.write import scaled_as_stored
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
        rest = 1.0 if factor == part["scale"] else factor / part["scale"]
        summary[name] = {
            "shape": state["inputs"][name]["shape"],
            "norm": math.sqrt(part["sum_squares"]) * rest,
            "mean": part["sum"] * rest / count if count else math.nan,
            "min": stored(rest, part["min"]) if count else math.nan,
            "max": stored(rest, part["max"]) if count else math.nan,
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
    asked = asked or {}
    views.check_applies(asked, spec)
    finish = views.Finish(
        spec=spec, asked=None, reduction=result.reduction, options=result.options,
        value=value, total=total, dtype=result.dtype, device=result.device,
        class_names=state.get("class_names"), warnings=result.warnings, core=state,
    )  # fmt: skip
    result.views = views.results(state, finish, asked)
    return result
