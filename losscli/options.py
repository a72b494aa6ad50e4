"""Typer option aliases shared by every loss command, and the options some losses share.

Loss commands name only their own options; ``cli.loss_command`` appends COMMON to each.
"""

import inspect
from dataclasses import dataclass
from typing import Annotated, Literal

import typer

COMMON_PANEL = "Common options"
LOSS_PANEL = "Loss options"

Reduction = Annotated[
    Literal["mean", "sum", "none"],
    typer.Option(
        "--reduction",
        "-r",
        help="How per-element losses combine, as in torch.",
        rich_help_panel=COMMON_PANEL,
    ),
]
Device = Annotated[
    str,
    typer.Option(
        "--device",
        "-d",
        envvar="LOSSCLI_DEVICE",
        help="cpu, cuda, cuda:N, mps, or auto (first available of cuda, mps, cpu).",
        rich_help_panel=COMMON_PANEL,
    ),
]
DType = Annotated[
    Literal["float32", "float64", "float16", "bfloat16"],
    typer.Option(
        "--dtype",
        help="Compute dtype of float inputs; class indices are always int64.",
        rich_help_panel=COMMON_PANEL,
    ),
]
Format = Annotated[
    Literal["table", "json", "value"],
    typer.Option(
        "--format",
        "-f",
        help="table (Rich), json (one object), or value (the bare number).",
        rich_help_panel=COMMON_PANEL,
    ),
]
NoGrad = Annotated[
    bool, typer.Option("--no-grad", help="Skip the backward pass.", rich_help_panel=COMMON_PANEL)
]
GradOut = Annotated[
    str | None,
    typer.Option(
        "--grad-out",
        metavar="PATH",
        help="Write the gradient w.r.t. the first float input (.npy .csv .tsv .txt .parquet).",
        rich_help_panel=COMMON_PANEL,
    ),
]
PerSample = Annotated[
    bool,
    typer.Option(
        "--per-sample",
        help="Also list per-sample losses (first --limit rows).",
        rich_help_panel=COMMON_PANEL,
    ),
]
ShowSteps = Annotated[
    bool,
    typer.Option(
        "--steps",
        help="Also show the intermediate quantities for the first --limit samples.",
        rich_help_panel=COMMON_PANEL,
    ),
]
Limit = Annotated[
    int,
    typer.Option(
        "--limit",
        min=1,
        help="Rows shown by --per-sample and --steps.",
        rich_help_panel=COMMON_PANEL,
    ),
]
FailAbove = Annotated[
    float | None,
    typer.Option(
        "--fail-above",
        metavar="X",
        help="Exit 1 when the loss is above X (or NaN).",
        rich_help_panel=COMMON_PANEL,
    ),
]
FailBelow = Annotated[
    float | None,
    typer.Option(
        "--fail-below",
        metavar="X",
        help="Exit 1 when the loss is below X (or NaN).",
        rich_help_panel=COMMON_PANEL,
    ),
]
InputFormat = Annotated[
    Literal["csv", "tsv", "txt", "npy", "npz", "parquet"] | None,
    typer.Option(
        "--input-format",
        help="Read every input as this format instead of detecting it.",
        rich_help_panel=COMMON_PANEL,
    ),
]
Delimiter = Annotated[
    str | None,
    typer.Option(
        "--delimiter",
        metavar="C",
        help="Text column delimiter (default: detected; 'tab' ok).",
        rich_help_panel=COMMON_PANEL,
    ),
]
Header = Annotated[
    bool | None,
    typer.Option(
        "--header/--no-header",
        help="Whether text tables have a header row (default: detected).",
        show_default=False,
        rich_help_panel=COMMON_PANEL,
    ),
]
PredCols = Annotated[
    str | None,
    typer.Option(
        "--pred-cols",
        metavar="COLS",
        help="Columns (names or 0-based indices) holding the predictions.",
        rich_help_panel=COMMON_PANEL,
    ),
]
TargetCols = Annotated[
    str | None,
    typer.Option(
        "--target-cols",
        metavar="COLS",
        help="Columns holding the targets; with --pred-cols, one file can give both.",
        rich_help_panel=COMMON_PANEL,
    ),
]
Classes = Annotated[
    str | None,
    typer.Option(
        "--classes",
        metavar="A,B,C",
        help="Class names in index order, for targets given as names.",
        rich_help_panel=COMMON_PANEL,
    ),
]
AllowNonfinite = Annotated[
    bool,
    typer.Option(
        "--allow-nonfinite",
        help="Let NaN/inf inputs through, with a warning.",
        rich_help_panel=COMMON_PANEL,
    ),
]
Quiet = Annotated[
    bool, typer.Option("--quiet", "-q", help="No warnings on stderr.", rich_help_panel=COMMON_PANEL)
]
Debug = Annotated[
    bool,
    typer.Option(
        "--debug",
        help="Show the Python traceback of an internal error.",
        rich_help_panel=COMMON_PANEL,
    ),
]

# Options that several losses share, under their torch names.
Weight = Annotated[
    str | None,
    typer.Option(
        "--weight",
        metavar="W1,W2,..|PATH",
        help="Rescaling weights: a comma-separated list or a file.",
        rich_help_panel=LOSS_PANEL,
    ),
]
IgnoreIndex = Annotated[
    int,
    typer.Option(
        "--ignore-index",
        help="Target value that is ignored (no loss, no gradient).",
        rich_help_panel=LOSS_PANEL,
    ),
]

Margin = Annotated[
    float,
    typer.Option("--margin", help="The margin of the loss.", rich_help_panel=LOSS_PANEL),
]


def Number(flag: str, text: str):  # noqa: N802  (used like the aliases above)
    """A float loss option."""
    return Annotated[float, typer.Option(flag, help=text, rich_help_panel=LOSS_PANEL)]


def Flag(flag: str, text: str):  # noqa: N802
    """A boolean loss option, off by default."""
    return Annotated[bool, typer.Option(flag, help=text, rich_help_panel=LOSS_PANEL)]


@dataclass
class Common:
    """The values of the common options for one command."""

    reduction: str = "mean"
    device: str = "cpu"
    dtype: str = "float32"
    format: str = "table"
    no_grad: bool = False
    grad_out: str | None = None
    per_sample: bool = False
    steps: bool = False
    limit: int = 20
    fail_above: float | None = None
    fail_below: float | None = None
    input_format: str | None = None
    delimiter: str | None = None
    header: bool | None = None
    pred_cols: str | None = None
    target_cols: str | None = None
    classes: str | None = None
    allow_nonfinite: bool = False
    quiet: bool = False
    debug: bool = False


_ALIASES = {
    "reduction": Reduction,
    "device": Device,
    "dtype": DType,
    "format": Format,
    "no_grad": NoGrad,
    "grad_out": GradOut,
    "per_sample": PerSample,
    "steps": ShowSteps,
    "limit": Limit,
    "fail_above": FailAbove,
    "fail_below": FailBelow,
    "input_format": InputFormat,
    "delimiter": Delimiter,
    "header": Header,
    "pred_cols": PredCols,
    "target_cols": TargetCols,
    "classes": Classes,
    "allow_nonfinite": AllowNonfinite,
    "quiet": Quiet,
    "debug": Debug,
}


COMMON_NAMES = frozenset(_ALIASES)


def common_parameters() -> list[inspect.Parameter]:
    """The common options as keyword parameters, defaults taken from Common."""
    defaults = Common()
    return [
        inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY, default=getattr(defaults, name), annotation=alias
        )
        for name, alias in _ALIASES.items()
    ]
