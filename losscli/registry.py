"""What losscli knows about each loss, without importing torch or NumPy.

A LossSpec names the loss, its torch class, its inputs in the order of torch's ``forward``,
its options with torch's defaults, how reduction "mean" divides, and the text of
``losscli explain``. The loss modules under ``losscli/losses`` each define one or more specs;
the CLI, ``list``, ``explain`` and the engine all read them from here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Input roles: what kind of array an input is, which decides its dtype and whether it gets a
# gradient. "float" inputs are computed in --dtype and differentiated; "index" inputs are class
# indices (int64); "label" inputs are discrete float labels such as +1/-1 (no gradient);
# "length" inputs are int64 sequence lengths.
FLOAT, INDEX, LABEL, LENGTH = "float", "index", "label", "length"

REDUCTIONS = ("mean", "sum", "none")

# Kinds of loss option: a number, an integer, an on-only flag (--swap), an on/off switch
# (--log-input/--no-log-input), and a vector (a comma-separated list or a file: --weight).
NUMBER, INTEGER, FLAG, SWITCH, VECTOR = "number", "integer", "flag", "switch", "vector"
INT64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class OptionSpec:
    """One loss option, declared once: its torch name and default, kind, help and domain.

    The CLI builds its parameter from this, and ``convert`` casts a value and checks its
    domain before a loss's ``prepare`` sees it (a vector's bounds apply to each entry).
    """

    name: str
    default: Any
    kind: str
    help: str
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    choices: tuple = ()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def domain(self) -> str | None:
        """The valid values in words (``> 0``, ``[0, 1]``, ``1 or 2``), or None."""
        if self.choices:
            return " or ".join(map(str, self.choices))
        if self.low is not None and self.high is not None:
            return f"[{self.low}, {self.high}]"
        if self.low is not None:
            return f"{'>' if self.open_low else '>='} {self.low}"
        return None

    @property
    def described(self) -> str:
        """The help text with the domain, as --help and explain show it."""
        return f"{self.help} Valid: {self.domain}." if self.domain else self.help

    def convert(self, value: Any) -> Any:
        """``value`` in this option's type, or OptionError naming the option and its domain."""
        import math

        from losscli.errors import OptionError

        if getattr(value, "ndim", None) == 0:
            value = value.item()  # a NumPy scalar or 0-d array, as Python code passes them
        if self.kind in (FLAG, SWITCH):
            if not isinstance(value, bool):
                raise OptionError(f"{self.flag} {value!r} is not true or false")
            return value
        if self.kind == VECTOR:
            if value is None:
                return None
            from losscli.io import read_vector

            vector = read_vector(self.flag, value)
            self._check_domain(
                vector.min() if vector.size else 0.0, vector.max() if vector.size else 0.0
            )
            return vector
        try:
            if isinstance(value, bool):
                raise TypeError
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            raise OptionError(f"{self.flag} {value!r} is not a finite number") from None
        if not math.isfinite(number):
            raise OptionError(f"{self.flag} {value} is not a finite number")
        if self.kind == INTEGER:
            whole = int(value) if isinstance(value, int) else None
            if whole is None and not number.is_integer():
                raise OptionError(f"{self.flag} {value!r} is not an integer")
            whole = int(number) if whole is None else whole
            if not INT64[0] <= whole <= INT64[1]:
                raise OptionError(f"{self.flag} {value} is out of range; valid: a 64-bit integer")
            number = whole
        if self.choices and number not in self.choices:
            raise OptionError(f"{self.flag} {value} is out of range; valid: {self.domain}")
        self._check_domain(number, number)
        return number

    def _check_domain(self, lowest: float, highest: float) -> None:
        from losscli.errors import OptionError

        below = self.low is not None and (
            lowest <= self.low if self.open_low else lowest < self.low
        )
        if below or (self.high is not None and highest > self.high):
            shown = lowest if below else highest
            raise OptionError(f"{self.flag} {shown} is out of range; valid: {self.domain}")


@dataclass(frozen=True)
class InputSpec:
    """One positional input of a loss, named as in JSON output."""

    name: str
    role: str
    must_be: str

    @property
    def differentiable(self) -> bool:
        return self.role == FLOAT


@dataclass(frozen=True)
class Explain:
    """The text of ``losscli explain``: formula, procedure, common mistakes."""

    formula: str
    procedure: tuple[str, ...]
    mistakes: tuple[str, ...]


@dataclass(frozen=True)
class LossSpec:
    """Everything losscli needs to know about one torch.nn loss."""

    name: str
    torch_class: str
    task: str
    summary: str
    inputs: tuple[InputSpec, ...]
    example: str
    explain: Explain
    prepare: Callable[..., Any]
    options: tuple[OptionSpec, ...] = ()
    aliases: tuple[str, ...] = ()
    reductions: tuple[str, ...] = REDUCTIONS
    # (arrays of one chunk, options, reduction, element count of its unreduced loss) -> the
    # chunk's share of the "mean" denominator: a number, or an array of per-element shares
    # that the engine sums in a fixed order (losscli.sums). None: the element count.
    mean_denominator: Callable[..., float] | None = None
    # (arrays, options) -> per-element factors applied before the "mean" sum. None: all ones.
    mean_scale: Callable[..., Any] | None = None
    # (arrays, options, limit) -> the Steps table of --steps: intermediate quantities.
    steps_table: Callable[..., Any] | None = None
    # The axis of the first input that counts samples (CTC's log_probs are (T,N,C)).
    batch_axis: int = 0
    # False where rows of an input do not line up with rows of the others (CTC).
    chunkable: bool = True
    # (torch, options as torch takes them) -> a function of the input tensors, in the order
    # of ``inputs``, that gives the unreduced loss. None: torch.nn.<torch_class> with
    # reduction="none". A loss that torch has only as a function sets it.
    forward: Callable[..., Any] | None = None
    # Where the loss comes from, as `list` and `explain` show it (None: torch.nn.<class>).
    source: str | None = None
    # What the first input is ("logits", "log-probs" or "probs"): --from converts to it;
    # None: the loss has no --from.
    predictions_are: str | None = None
    # Whether each row of the first input is a distribution over classes (axis 1): softmax
    # logits or log-probabilities. --from converts and checks it by rows.
    class_rows: bool = False
    # (a row of the first input, its class-index target) -> the probability the row gives
    # the target: what --top shows as p_target. None: --top shows the prediction itself.
    class_probability: Callable[..., float] | None = None
    # Whether the mean reads as a language model's: perplexity exp(mean) and bits.
    perplexity: bool = False
    # (torch, tensors by input name, options as torch takes them, names of the inputs whose
    # gradient is wanted) -> (the unreduced loss, {name: gradient of its sum}): the loss and
    # its gradient in one pass of torch ops without autograd, for the losses people run on
    # big files; it may return None for a case it leaves to autograd. It must agree with
    # autograd on the forward above (tests/test_fused.py). None: autograd does it.
    fused: Callable[..., Any] | None = None

    def unreduced(self, torch, options: dict[str, Any]):
        """The function that computes this loss's unreduced elements from tensors."""
        if self.forward is not None:
            return self.forward(torch, options)
        return getattr(torch.nn, self.torch_class)(reduction="none", **options)

    @property
    def origin(self) -> str:
        """Where the loss comes from (``torch.nn.CrossEntropyLoss``)."""
        return self.source or f"torch.nn.{self.torch_class}"

    @property
    def defaults(self) -> dict[str, Any]:
        """Every option's torch default, by name."""
        return {option.name: option.default for option in self.options}

    def convert_options(self, values: dict[str, Any]) -> dict[str, Any]:
        """Every option converted and checked, defaults filled in; unknown names refused."""
        from losscli.errors import OptionError

        known = {option.name: option for option in self.options}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise OptionError(
                f"{self.name} has no option {', '.join(unknown)}; its options: "
                f"{', '.join(known) or 'none'}"
            )
        return {
            name: option.convert(values[name]) if name in values else option.default
            for name, option in known.items()
        }

    @property
    def float_inputs(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.inputs if i.differentiable)

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.inputs)

    @property
    def metavar(self) -> str:
        return " ".join(i.name.upper() for i in self.inputs)


_SPECS: dict[str, LossSpec] | None = None


def loss_modules() -> list:
    """Every module of ``losscli.losses``, in the order `losscli list` and the help show
    their losses: by each module's ``ORDER``, then by name."""
    import pkgutil

    from losscli import losses

    modules = [
        importlib.import_module(f"losscli.losses.{info.name}")
        for info in pkgutil.iter_modules(losses.__path__)
    ]
    return sorted(modules, key=lambda m: (getattr(m, "ORDER", 1000), m.__name__))


def all_specs() -> dict[str, LossSpec]:
    """Every loss by command name, in display order."""
    global _SPECS
    if _SPECS is None:
        specs: dict[str, LossSpec] = {}
        for module in loss_modules():
            for spec in module.SPECS:
                specs[spec.name] = spec
        _SPECS = specs
    return _SPECS


# Options that several losses take, declared once.
WEIGHT = OptionSpec("weight", None, VECTOR, "Rescaling weights: a comma-separated list or a file.")
IGNORE_INDEX = OptionSpec(
    "ignore_index", -100, INTEGER, "Target value that is ignored (no loss, no gradient)."
)


def margin_option(default: float, **domain) -> OptionSpec:
    """The --margin of a margin loss (defaults and domains differ between losses)."""
    return OptionSpec("margin", default, NUMBER, "The margin of the loss.", **domain)


def shared_prepare(name: str) -> Callable[..., Any]:
    """A prepare function of ``losscli.validate`` by name, imported when first called, so that
    declaring a loss does not import NumPy (``--help`` and ``list`` stay fast)."""

    def prepare(inputs, options, ctx):
        from losscli import validate

        return getattr(validate, name)(inputs, options, ctx)

    prepare.__name__ = name
    return prepare


def register(spec: LossSpec) -> None:
    """Add a loss to the registry (loss modules list theirs in SPECS; tests add toy ones)."""
    all_specs()[spec.name] = spec


def get_spec(name: str) -> LossSpec:
    """The spec for a command name or alias; raises OptionError listing the known names."""
    from losscli.errors import OptionError

    specs = all_specs()
    if name in specs:
        return specs[name]
    for spec in specs.values():
        if name in spec.aliases:
            return spec
    known = ", ".join(specs)
    raise OptionError(f"unknown loss {name!r}; known losses: {known}")
