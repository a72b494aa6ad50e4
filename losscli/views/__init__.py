"""Views beyond the number: one module per view, found by itself (like the loss modules).

A view declares, once: its option (flag, type, domain, the losses it applies to, whether
``compare`` and ``merge`` offer it), its accumulator (``start``, then ``add`` for each block
of rows), how the accumulators of parts of the rows merge, its typed part of the state file
(a msgspec Struct), its result (JSON fields), its tables and its part of the --report page.
The engine, the state, the Result, the renderer, the report, the options and ``--dask`` loop
over the registry (``all_views``).

Shared here: exact sums, the moments of a mean and its standard error, breakdown rows, and
the paired comparison of two runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Annotated, Any

import msgspec

# The 0.975 quantile of the standard normal distribution.
Z95 = 1.959963984540054

# ------------------------------------------------------------------ the state's vocabulary

Count = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
# A float64: a JSON number, or "nan", "inf" or "-inf" (checked by ``real``).
Number = float | str


class Part(msgspec.Struct, forbid_unknown_fields=True):
    """A part of a state: what a run writes, nothing else."""


def number(value: float) -> float | str:
    """A float for JSON: NaN and infinities as strings (JSON has no such numbers)."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return float(value)


def shown(value: Any) -> str:
    """A value of a state, short, as a message quotes it."""
    import json

    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 40 else f"{text[:30]}..."


def real(path: str, field: str, value: Any) -> float:
    """A float64 of the state: a number, or "nan", "inf", "-inf"."""
    from losscli.errors import InputError

    if isinstance(value, str):
        if value not in SPELLINGS:
            raise InputError(f"{path}: {field}: {shown(value)} is not a number")
        return float(value)
    return float(value)


# How a state may spell a float64 that JSON has no number for: as a run writes it, and
# capitalised.
SPELLINGS = ("nan", "inf", "-inf", "NaN", "Inf", "-Inf", "Infinity", "-Infinity")


def not_negative(path: str, field: str, value: float | None) -> None:
    from losscli.errors import InputError

    if value is not None and value < 0:
        raise InputError(f"{path}: {field}: {value!r} is negative")


def refuse_unequal(paths: list[str], what: str, values: list) -> None:
    """Refuse states that disagree on ``what`` (InputError naming the first two)."""
    from losscli.errors import InputError

    first = values[0]
    for path, value in zip(paths, values):
        if value != first:
            raise InputError(
                f"states cannot be merged: {paths[0]} has {what} {first!r}, {path} has {value!r}"
            )


def fsum(values) -> float:
    """An exact float sum, as math.fsum, that overflows to an infinity and gives NaN for
    inf - inf instead of raising."""
    values = [float(v) for v in values]
    try:
        return math.fsum(values)
    except OverflowError:
        return math.copysign(math.inf, sum(math.copysign(1.0, v) for v in values))
    except ValueError:  # inf + -inf
        return math.nan


def is_count(value: Any) -> bool:
    """Whether ``value`` is a row count: an integer from 0 to 2**63 - 1."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


# ------------------------------------------------------------------ moments and the mean


class Moments:
    """Count, mean and sum of squared deviations (M2) of samples, added block by block and
    merged with Chan's formulas: a variance that stays exact where the mean is far larger
    than the spread (where sum of squares - n mean^2 cancels to nothing)."""

    def __init__(self, count: int = 0, mean: float = 0.0, m2: float = 0.0) -> None:
        self.count, self.mean, self.m2 = count, mean, m2
        self._scratch = None

    def __getstate__(self) -> dict:  # a state sent to or from a Dask worker: no buffer
        return {**self.__dict__, "_scratch": None}

    def add(self, values) -> None:
        """Samples: a 1-D float64 NumPy array, or torch tensor on any device."""
        import numpy as np

        count = len(values)
        if count:
            with np.errstate(invalid="ignore", over="ignore"):  # inf losses give a NaN m2
                mean = float(values.mean())
                if isinstance(values, np.ndarray) and values.dtype == np.float64:
                    # Into a buffer kept from block to block (a new array of each block's
                    # size costs its page faults), then one dot: no array of squares.
                    if self._scratch is None or len(self._scratch) < count:
                        self._scratch = np.empty(count)
                    deviations = np.subtract(values, mean, out=self._scratch[:count])
                    m2 = float(np.dot(deviations, deviations))
                else:
                    deviations = values - mean
                    m2 = float((deviations * deviations).sum())
            self.merge(Moments(count, mean, m2))

    def merge(self, other: Moments) -> None:
        import numpy as np

        if not other.count:
            return
        if not self.count:
            self.count, self.mean, self.m2 = other.count, other.mean, other.m2
            return
        count = self.count + other.count
        with np.errstate(invalid="ignore", over="ignore"):
            delta = other.mean - self.mean
            self.m2 = self.m2 + other.m2 + delta * delta * self.count * other.count / count
            self.mean = self.mean + delta * other.count / count
        self.count = count

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "mean": self.mean, "m2": self.m2}


def _weighted(options: dict[str, Any]) -> bool:
    return any(options.get(name) is not None for name in ("weight", "pos_weight"))


def standard_error(
    moments: Moments, reduction: str, options: dict, scaled: bool = False
) -> dict[str, Any]:
    """The standard error of a mean of equally weighted samples (the unreduced loss's
    elements; for class losses each counted target) and its 95% interval, mean +- 1.96 SE;
    or why it does not apply: {"stderr", "ci95", "n"} or {"note"}. ``scaled``: the loss's
    mean scales each element (ctc divides by target lengths)."""
    if reduction != "mean":
        return {"note": f"a standard error is of a mean; --reduction {reduction} is not one"}
    if _weighted(options):
        return {"note": "a weighted mean: the standard error of a plain mean does not apply"}
    if scaled:
        return {"note": "the mean scales each sample's loss: the standard error does not apply"}
    n, mean, m2 = moments.count, moments.mean, moments.m2
    if n < 2 or not math.isfinite(mean) or not math.isfinite(m2):
        return {"note": "needs at least two samples, all finite"}
    stderr = math.sqrt(max(m2, 0.0) / (n - 1) / n)
    return {"stderr": stderr, "ci95": [mean - Z95 * stderr, mean + Z95 * stderr], "n": n}


def breakdown(key: str, labels: list, sums: list[float], counts: list[int]) -> list[dict]:
    """Per label ({key: label}): count, mean loss and share of the total loss."""
    grand = fsum(sums)
    return [
        {
            key: label,
            "count": int(count),
            "mean": total / count if count else math.nan,
            "share": total / grand if grand else math.nan,
        }
        for label, total, count in zip(labels, sums, counts)
    ]


# ------------------------------------------------------------------ a view, declared once


@dataclass(frozen=True)
class Option:
    """A view's command-line option: the loss commands get it (refused at run time, naming
    the losses, where ``losses`` says no), and ``merge`` and ``compare`` where they offer it.
    ``kind`` is bool (a switch, default False), int or str (default None)."""

    flag: str
    kind: type
    help: str
    metavar: str | None = None
    low: int | None = None
    high: int | None = None
    losses: Callable[[Any], bool] | None = None  # LossSpec -> whether the view applies
    compare: bool = False
    merge: bool = False

    @property
    def field(self) -> str:
        """Its name among the settings (``Common``): ``--by-class`` -> ``by_class``."""
        return self.flag[2:].replace("-", "_")

    @property
    def default(self) -> Any:
        return False if self.kind is bool else None

    def applies(self, spec) -> bool:
        return self.losses is None or bool(self.losses(spec))

    def loss_names(self) -> str:
        """The losses it applies to, as a message names them."""
        from losscli.registry import all_specs

        return ", ".join(s.name for s in all_specs().values() if self.applies(s))


@dataclass
class Setup:
    """What a view's ``start`` sees: the run's loss and settings, and its first block."""

    spec: Any
    asked: Any  # the view's option value (False or None: not asked)
    options: dict[str, Any]  # the loss options, prepared
    reduction: str
    dtype: str
    grad: bool
    convert_from: str | None  # --from's conversion, where the predictions are converted
    emit_state: bool  # the run keeps a mergeable state
    classes: int | None  # the class count, where the targets are class indices
    targets_kind: str | None
    targets_source: str | None
    source: str  # the first input, as a state names it
    # The run shows more than its value (a table, JSON, a report): the views that are always
    # on keep nothing where it does not (-f value) and no state is kept.
    shown: bool = True


@dataclass
class Block:
    """One block of rows as every view sees it: the loss, its prepared options and arrays
    (the predictions converted by --from, the targets), the predictions as given (``raw``,
    None without --from), the unreduced loss (float64, flat, in the shape ``shape``), the
    loss of each row, which elements and rows are samples (None: all; False: an ignored
    target), the number of its first row, the --group-by values, the gradients of its sum
    times ``gradient_scale`` (the factor the run expects its gradient to be scaled by)."""

    spec: Any
    prepared: Any
    raw: Any
    elements: Any
    shape: tuple
    row_losses: Any  # () -> the loss of each row, computed when a view first asks (rows)
    element_mask: Any
    row_mask: Any
    first_row: int
    groups: Any
    gradients: dict
    gradient_scale: float = 1.0

    @cached_property
    def rows(self):
        """The loss of each row (the sum of its elements)."""
        return self.row_losses()

    @property
    def options(self) -> dict[str, Any]:
        return self.prepared.options

    @property
    def arrays(self) -> dict[str, Any]:
        return self.prepared.arrays

    @property
    def predictions(self):
        return self.arrays[self.spec.inputs[0].name]

    @property
    def targets(self):
        inputs = self.spec.inputs
        return self.arrays.get(inputs[1].name) if len(inputs) > 1 else None

    @property
    def samples(self):
        """The unreduced loss of the samples (ignored targets left out)."""
        return self.elements if self.element_mask is None else self.elements[self.element_mask]


@dataclass
class Finish:
    """What a view's ``result`` sees: the run (or merged states) it describes, the option's
    value (``asked``), the class names, and the warnings to add to."""

    spec: Any
    asked: Any
    reduction: str
    options: dict[str, Any]
    value: Any
    total: float
    dtype: str
    device: str
    class_names: list[str] | None
    warnings: list[str]
    core: dict[str, Any] | None = None  # a state's core fields, where made from states


class View:
    """One view. Subclasses set ``name`` (its key in the state and among the results) and
    what they have of: ``option``, ``State`` (its Struct in the state file; None: it keeps
    nothing) and ``kept`` ("always": every state keeps it, so that ``merge`` can show it
    later; "asked": a state keeps it where the run asked for it, and shows it wherever it
    is kept)."""

    name: str = ""
    state_key: str = ""  # its key in the state file, where not its name
    option: Option | None = None
    State: type | None = None
    kept: str = "asked"
    noun: str = ""  # what the merged result lacks where a part lacks it
    missing: str = ""  # why states cannot show it where asked (they do not keep it)
    # Where its rows of the summary table go: after the "value", at the "end" (after the
    # dtype), or "last" (after those at the end, before the inputs).
    summary_at: str = "end"
    # A command line on the sample data that shows it (a test runs it and looks for its JSON).
    example: str = ""
    # Its ``add`` reads the block's gradients: a run that keeps it computes every gradient
    # (others compute only those they show or write).
    needs_gradients: bool = False

    @property
    def key(self) -> str:
        """Its key in the state file."""
        return self.state_key or self.name

    # -- a run
    def start(self, setup: Setup) -> Any:
        """The empty accumulator of a run, or None where the run keeps nothing of it."""
        return None

    def add(self, part: Any, block: Block) -> None:
        """Add one block of rows to the accumulator."""

    # -- the state
    def dump(self, part: Any) -> dict[str, Any]:
        """The accumulator as its part of the state (JSON; floats through ``number``)."""
        raise NotImplementedError

    def load(self, path: str, data: Any, core: dict[str, Any]) -> Any:
        """The accumulator of a state's part (``data``, decoded as ``State``), checked
        against the state's ``core``; InputError names what is wrong."""
        raise NotImplementedError

    def check(self, path: str, part: Any, core: dict[str, Any]) -> None:
        """Refuse a loaded part (``load`` gave it) that contradicts the rest of the state
        (``core``: the loaded state, every view's part in it): a relation that every real
        run's state satisfies; InputError ``PATH: FIELD: what is wrong``."""

    def compatible(self, paths: list[str], parts: list) -> None:
        """Refuse parts (None where a state lacks it) that cannot merge."""

    def combine(self, parts: list) -> Any:
        """One accumulator from those of parts of the rows (every one present)."""
        raise NotImplementedError

    def shift_rows(self, part: Any, offset: int) -> None:
        """Number the rows of a part's accumulator from ``offset`` (Dask's parts)."""

    # -- the result
    def result(self, part: Any, finish: Finish) -> Any:
        """What the result shows (JSON-ready through ``to_json``), or None: nothing."""
        raise NotImplementedError

    def to_json(self, shown: Any) -> dict[str, Any]:
        """The fields of the JSON object."""
        return {self.name: shown}

    def summary(self, shown: Any) -> list[tuple[str, str]]:
        """Rows (field, text) of the summary table."""
        return []

    def tables(self, shown: Any) -> list:
        """Rich renderables below the summary (and the gradient)."""
        return []

    # -- the HTML report (``losscli.report``), made from the JSON object that -f json writes
    def report_summary(self, result: dict[str, Any]) -> list[tuple[str, str]]:
        """Rows (field, HTML) of the report's summary; none where the result lacks it."""
        return []

    def report(self, result: dict[str, Any]) -> Any:
        """The report's section of this view (``losscli.report.html.Section``), or None: no
        section (the default, and where the result lacks it)."""
        return None

    # -- compare
    def compare(self, a: Any, b: Any) -> Any:
        """What ``compare`` shows of a's and b's results (JSON-ready), or None."""
        return None

    def compare_tables(self, compared: Any) -> list:
        return []

    def compare_report(self, comparison: dict[str, Any]) -> Any:
        """The section of the compare report (from compare's JSON object), or None."""
        return None


_VIEWS: list[View] | None = None


def view_modules() -> list:
    """Every view module of ``losscli.views`` (those with a ``VIEW``), in their ``ORDER``:
    the order of JSON fields, tables and options."""
    import importlib
    import pkgutil

    modules = [
        importlib.import_module(f"{__name__}.{info.name}")
        for info in pkgutil.iter_modules(__path__)
        if not info.name.startswith("_")
    ]
    modules = [m for m in modules if hasattr(m, "VIEW")]
    return sorted(modules, key=lambda m: (getattr(m, "ORDER", 1000), m.__name__))


def all_views() -> list[View]:
    global _VIEWS
    if _VIEWS is None:
        _VIEWS = [module.VIEW for module in view_modules()]
    return _VIEWS


def options(offered_by: str | None = None) -> list[Option]:
    """The views' options (those ``compare`` or ``merge`` offers, where named)."""
    found = [v.option for v in all_views() if v.option is not None]
    return [o for o in found if offered_by is None or getattr(o, offered_by)]


def asked(settings, spec=None) -> dict[str, Any]:
    """Each view's option value in ``settings`` (by view name), checked against ``spec``
    where given (``check_applies``)."""
    values = {
        view.name: getattr(settings, view.option.field, view.option.default)
        for view in all_views()
        if view.option is not None
    }
    if spec is not None:
        check_applies(values, spec)
    return values


def check_applies(asked: dict[str, Any], spec) -> None:
    """Refuse (OptionError) a view asked of a loss it does not apply to, naming those it
    applies to."""
    from losscli.errors import OptionError

    for view in all_views():
        option = view.option
        wanted = option is not None and asked.get(view.name) not in (None, False)
        if wanted and not option.applies(spec):
            raise OptionError(f"{option.flag} applies to {option.loss_names()}, not {spec.name}")


def start(setup: Setup, asked: dict[str, Any]) -> dict[str, Any]:
    """The accumulators a run keeps, by state key (``asked``: each view's option value)."""
    parts = {}
    for view in all_views():
        part = view.start(replace(setup, asked=asked.get(view.name)))
        if part is not None:
            parts[view.key] = part
    return parts


def add(parts: dict[str, Any], block: Block) -> None:
    for view in all_views():
        if view.key in parts:
            view.add(parts[view.key], block)


def results(parts: dict[str, Any], finish: Finish, asked: dict[str, Any]) -> dict[str, Any]:
    """What each view shows of a run or of merged states: a view without an option always
    (where it has something to show); a view kept always where asked; a view kept where
    asked wherever it is kept. Asked of states that lack it: OptionError."""
    from losscli.errors import OptionError

    shown = {}
    for view in all_views():
        part = parts.get(view.key)
        finish.asked = asked.get(view.name)
        if view.option is not None:
            wanted = finish.asked not in (None, False)
            if wanted and part is None and view.State is not None:
                raise OptionError(f"{view.option.flag}: {view.missing}")
            if not wanted and (view.kept == "always" or part is None):
                continue
        value = view.result(part, finish)
        if value is not None:
            shown[view.name] = value
    return shown


def dump(parts: dict[str, Any]) -> dict[str, Any]:
    """The view parts of a state, JSON-ready: null where a view kept always is not kept
    (a state of an older run), absent where a view kept where asked was not asked."""
    return {
        v.key: None if parts.get(v.key) is None else v.dump(parts[v.key])
        for v in all_views()
        if v.State is not None and (parts.get(v.key) is not None or v.kept == "always")
    }


def merge(paths: list[str], parts_of: list[dict[str, Any]], notes: list[str]) -> dict[str, Any]:
    """The view parts of merged states (``compatible`` checked first); a part that some
    states lack is dropped, with a note where the view is kept only where asked."""
    merged = {}
    for view in all_views():
        if view.State is None:
            continue
        parts = [p.get(view.key) for p in parts_of]
        present = [p for p in parts if p is not None]
        merged[view.key] = None
        if present and len(present) == len(parts):
            merged[view.key] = view.combine(present)
        elif present and view.kept == "asked":
            notes.append(
                f"{view.option.flag}: {paths[parts.index(None)]} was run without it, so the "
                f"merged result has no {view.noun}"
            )
    return merged


# ------------------------------------------------------------------ compare


class Comparison:
    """Two results on the same targets and their paired difference b - a; ``views``: what
    each view compares of them (``View.compare``)."""

    def __init__(self, a, b, value: float, uncertainty: dict[str, Any]):
        self.a, self.b, self.value, self.uncertainty = a, b, value, uncertainty
        self.views: dict[str, Any] = {}
        self.gate: dict[str, Any] | None = None

    @property
    def warnings(self) -> list[str]:
        """Each side's warnings, said once where both give them, else marked (a) or (b)."""
        a, b = self.a.warnings, self.b.warnings
        shared = [w for w in a if w in b]
        return [
            *shared,
            *(f"(a) {w}" for w in a if w not in shared),
            *(f"(b) {w}" for w in b if w not in shared),
        ]

    def difference(self) -> dict[str, Any]:
        difference = {
            "value": self.value,
            "stderr": self.uncertainty.get("stderr"),
            "ci95": self.uncertainty.get("ci95"),
        }
        if "note" in self.uncertainty:
            difference["stderr_note"] = self.uncertainty["note"]
        difference["verdict"] = self.verdict()
        difference["better"] = self.better()
        return difference

    def better(self) -> str | None:
        """The verdict as a token for scripts: "a" or "b" where the 95% interval excludes 0
        (where there is no interval, as for a sum: the one of lower loss), None where there
        is no clear difference (or it is NaN)."""
        if self.value != self.value:
            return None
        if "ci95" not in self.uncertainty:
            return None if self.value == 0 else ("b" if self.value < 0 else "a")
        low, high = self.uncertainty["ci95"]
        if high < 0:
            return "b"
        if low > 0:
            return "a"
        return None

    def verdict(self) -> str:
        """What the interval says, in words (lower loss is better)."""
        if self.value != self.value:
            return "no verdict: the difference is NaN"
        if "ci95" not in self.uncertainty:
            if self.value == 0:
                return "the same loss"
            return f"b is {'lower (better)' if self.value < 0 else 'higher (worse)'}; no interval"
        low, high = self.uncertainty["ci95"]
        if high < 0:
            return "b is better (lower loss): the 95% interval is below 0"
        if low > 0:
            return "b is worse (higher loss): the 95% interval is above 0"
        return "no clear difference: the 95% interval contains 0"

    def to_dict(self) -> dict[str, Any]:
        from losscli.values import plain

        out = {
            "a": self.a.to_dict(),
            "b": self.b.to_dict(),
            "difference": plain(self.difference()),
        }
        for name, compared in self.views.items():
            out[name] = plain(compared)
        out["gate"] = plain(self.gate)
        return out
