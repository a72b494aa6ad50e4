"""What losscli knows about each loss, without importing torch or NumPy.

A LossSpec names the loss, its torch class, its inputs in the order of torch's ``forward``,
its options with torch's defaults, how reduction "mean" divides, and the text of
``losscli explain``. The loss modules under ``losscli/losses`` each define one or more specs;
the CLI, ``list``, ``explain`` and the engine all read them from here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Input roles: what kind of array an input is, which decides its dtype and whether it gets a
# gradient. "float" inputs are computed in --dtype and differentiated; "index" inputs are class
# indices (int64); "label" inputs are discrete float labels such as +1/-1 (no gradient);
# "length" inputs are int64 sequence lengths.
FLOAT, INDEX, LABEL, LENGTH = "float", "index", "label", "length"

REDUCTIONS = ("mean", "sum", "none")


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
    """The text of ``losscli explain``: formula, steps, common mistakes, a runnable example."""

    formula: str
    steps: tuple[str, ...]
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
    options: dict[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    reductions: tuple[str, ...] = REDUCTIONS
    # (arrays of one chunk, options, reduction, element count of its unreduced loss) -> the
    # chunk's share of the "mean" denominator. None: the element count.
    mean_denominator: Callable[..., float] | None = None
    # (arrays, options) -> per-element factors applied before the "mean" sum. None: all ones.
    mean_scale: Callable[..., Any] | None = None
    steps: Callable[..., Any] | None = None
    # The axis of the first input that counts samples (CTC's log_probs are (T,N,C)).
    batch_axis: int = 0
    # False where rows of an input do not line up with rows of the others (CTC).
    chunkable: bool = True

    @property
    def float_inputs(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.inputs if i.differentiable)

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.inputs)

    @property
    def metavar(self) -> str:
        return " ".join(i.name.upper() for i in self.inputs)


# Loss modules, in the order `losscli list` and the help show them.
LOSS_MODULES = ("classification", "regression", "binary", "distribution", "margin", "ctc")

_SPECS: dict[str, LossSpec] | None = None


def all_specs() -> dict[str, LossSpec]:
    """Every loss by command name, in display order."""
    global _SPECS
    if _SPECS is None:
        specs: dict[str, LossSpec] = {}
        for module in LOSS_MODULES:
            for spec in importlib.import_module(f"losscli.losses.{module}").SPECS:
                specs[spec.name] = spec
        _SPECS = specs
    return _SPECS


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
