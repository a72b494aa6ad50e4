"""The options common to every loss command, declared once as annotated fields of ``Common``.

Each field's annotation is the Typer option (flags, help, panel) and its default is the
option's default; ``common_parameters`` turns the fields into the parameters of every loss
command, and ``loss_parameter`` does the same for a loss's own ``OptionSpec``.
"""

import copy
import dataclasses
import functools
import inspect
import typing
from dataclasses import dataclass
from typing import Annotated, Literal

import typer

from losscli.io import formats
from losscli.registry import FLAG, INTEGER, NUMBER, SWITCH, VECTOR, LossSpec, OptionSpec

COMMON_PANEL = "Common options"
LOSS_PANEL = "Loss options"


# The common options a loss command's --help shows; the others are accepted all the same,
# and `losscli help options` lists them all.
SHOWN = ("reduction", "device", "dtype", "format", "grad_out", "fail_above")


def _common(*flags: str, help: str, **extra) -> typer.models.OptionInfo:
    return typer.Option(*flags, help=help, rich_help_panel=COMMON_PANEL, **extra)


def in_range(flag: str, low: int | None = None, high: int | None = None):
    """A check of an integer option's domain, said in words (not as a range label in the
    help): ``--top 0 is out of range; valid: 1 to 10000``."""

    def check(value):
        if value is None or isinstance(value, bool):
            return value
        if (low is not None and value < low) or (high is not None and value > high):
            valid = f"{low} to {high}" if high is not None else f">= {low}"
            raise typer.BadParameter(f"{value} is out of range; valid: {valid}")
        return value

    return check


@dataclass
class _Common:
    """The common options but the views'."""

    reduction: Annotated[
        Literal["mean", "sum", "none"],
        _common(
            "--reduction",
            "-r",
            metavar="MODE",
            help="How per-element losses combine, as in torch: mean, sum or none.",
        ),
    ] = "mean"
    device: Annotated[
        str,
        _common(
            "--device",
            "-d",
            metavar="DEVICE",
            envvar="LOSSCLI_DEVICE",
            help="cpu, cuda, cuda:N, mps, or auto (first available of cuda, mps, cpu).",
        ),
    ] = "cpu"
    dtype: Annotated[
        Literal["float32", "float64", "float16", "bfloat16"],
        _common(
            "--dtype",
            metavar="DTYPE",
            help="float32, float64, float16 or bfloat16: the compute dtype of float inputs.",
        ),
    ] = "float32"
    format: Annotated[
        Literal["table", "json", "value"],
        _common(
            "--format",
            "-f",
            metavar="FORMAT",
            help="table (Rich), json (one object), or value (the number).",
        ),
    ] = "table"
    no_grad: Annotated[bool, _common("--no-grad", help="Skip the backward pass.")] = False
    grad_out: Annotated[
        str | None,
        _common(
            "--grad-out",
            metavar="PATH",
            help="Write the gradient w.r.t. the first float input (.npy .csv .tsv .txt .parquet).",
        ),
    ] = None
    per_sample: Annotated[
        bool, _common("--per-sample", help="Also list per-sample losses (first --limit rows).")
    ] = False
    steps: Annotated[
        bool,
        _common(
            "--steps", help="Also show the intermediate quantities for the first --limit samples."
        ),
    ] = False
    from_: Annotated[
        Literal["logits", "probs", "log-probs"] | None,
        _common(
            "--from",
            metavar="KIND",
            help="What the predictions are (logits, probs or log-probs), converted to what "
            "the loss takes (ce, nll, bce, bce-logits, kl-div).",
        ),
    ] = None
    limit: Annotated[
        int,
        _common(
            "--limit",
            metavar="N",
            callback=in_range("--limit", 1),
            help="Rows shown by --per-sample and --steps.",
        ),
    ] = 20
    dask: Annotated[
        str | None,
        _common(
            "--dask",
            metavar="ADDRESS",
            envvar="LOSSCLI_DASK",
            help="Run one task per shard on a Dask scheduler (tcp://HOST:PORT), or 'local'.",
        ),
    ] = None
    emit_state: Annotated[
        str | None,
        _common(
            "--emit-state",
            metavar="FILE.json",
            help="Also write the run's mergeable state (see losscli merge).",
        ),
    ] = None
    report: Annotated[
        str | None,
        _common(
            "--report",
            metavar="FILE.html",
            help="Also write an HTML report of the result: summary, charts and tables, in one "
            "file that opens offline (needs pip install 'losscli[report]').",
        ),
    ] = None
    block_rows: Annotated[
        int | None,
        _common(
            "--block-rows",
            callback=in_range("--block-rows", 1),
            metavar="N",
            help="Rows read and computed at a time (default: 4M values of the widest input).",
        ),
    ] = None
    fail_above: Annotated[
        float | None,
        _common("--fail-above", metavar="X", help="Exit 1 when the loss is above X (or NaN)."),
    ] = None
    fail_below: Annotated[
        float | None,
        _common("--fail-below", metavar="X", help="Exit 1 when the loss is below X (or NaN)."),
    ] = None
    input_format: Annotated[
        Literal[formats.names()] | None,
        _common(
            "--input-format",
            metavar="FMT",
            help="Read every input as FMT instead of detecting it (losscli list-formats).",
        ),
    ] = None
    delimiter: Annotated[
        str | None,
        _common(
            "--delimiter", metavar="C", help="Text column delimiter (default: detected; 'tab' ok)."
        ),
    ] = None
    header: Annotated[
        bool | None,
        _common(
            "--header/--no-header",
            show_default=False,
            help="Whether text tables have a header row (default: detected).",
        ),
    ] = None
    pred_cols: Annotated[
        str | None,
        _common(
            "--pred-cols",
            metavar="COLS",
            help="Columns (names, 0-based indices, ranges 1:4) holding the predictions.",
        ),
    ] = None
    target_cols: Annotated[
        str | None,
        _common(
            "--target-cols",
            metavar="COLS",
            help="Columns holding the targets; with --pred-cols, one file can give both.",
        ),
    ] = None
    classes: Annotated[
        str | None,
        _common(
            "--classes", metavar="A,B,C", help="Class names in index order, for named targets."
        ),
    ] = None
    allow_nonfinite: Annotated[
        bool, _common("--allow-nonfinite", help="Let NaN/inf inputs through, with a warning.")
    ] = False
    quiet: Annotated[bool, _common("--quiet", "-q", help="No warnings on stderr.")] = False
    debug: Annotated[
        bool, _common("--debug", help="Show the Python traceback of an internal error.")
    ] = False


def _view_field(option) -> tuple:
    """The field of a view's option (``losscli.views.Option``)."""
    extra = {"metavar": option.metavar} if option.metavar else {}
    if option.low is not None or option.high is not None:
        extra["callback"] = in_range(option.flag, option.low, option.high)
    kind = bool if option.kind is bool else option.kind | None
    text = option.help if option.losses is None else f"{option.help} ({option.loss_names()})"
    info = _common(option.flag, help=text, **extra)
    return option.field, Annotated[kind, info], dataclasses.field(default=option.default)


def _with_views(base: type) -> type:
    """``base``'s fields with the views' options (from their registry) after --steps."""
    from losscli import views

    hints = typing.get_type_hints(base, include_extras=True)
    fields = []
    for field in dataclasses.fields(base):
        fields.append((field.name, hints[field.name], dataclasses.field(default=field.default)))
        if field.name == "steps":
            fields += [_view_field(option) for option in views.options()]
    made = dataclasses.make_dataclass("Common", fields)
    made.__module__, made.__doc__ = __name__, "The values of the common options for one command."
    return made


Common = _with_views(_Common)


@functools.cache
def _common_hints() -> dict:
    return typing.get_type_hints(Common, include_extras=True)


def common_parameters(
    spec: LossSpec | None,
    only: tuple[str, ...] = (),
    reduced: bool = False,
    shown: tuple[str, ...] | None = None,
) -> list[inspect.Parameter]:
    """The common options as keyword parameters (those named in ``only``, where given);
    ``--reduction`` offers the loss's reductions (but none where ``reduced``); ``spec`` is
    None where ``only`` leaves --reduction out. ``shown``: the options --help shows (the
    others are hidden from it, and accepted)."""
    reductions = spec.reductions if spec is not None else ()
    return list(_parameters(reductions, only, reduced, shown))


@functools.cache
def _parameters(
    spec_reductions: tuple[str, ...],
    only: tuple[str, ...],
    reduced: bool,
    shown: tuple[str, ...] | None,
) -> tuple[inspect.Parameter, ...]:
    """``common_parameters`` for a loss of these reductions: built once for the losses that
    share them (every command is built at start-up, --help included)."""
    hints = _common_hints()
    parameters = []
    for field in dataclasses.fields(Common):
        if only and field.name not in only:
            continue
        annotation = hints[field.name]
        if field.name == "reduction":
            reductions = tuple(r for r in spec_reductions if not (reduced and r == "none"))
            annotation = Annotated[
                Literal[reductions],  # type: ignore[valid-type]
                _common(
                    "--reduction",
                    "-r",
                    metavar="MODE",
                    help="How per-element losses combine, as in torch: "
                    + ", ".join(reductions[:-1])
                    + f" or {reductions[-1]}"
                    + (
                        "; batchmean divides by the batch size."
                        if "batchmean" in reductions
                        else "."
                    ),
                ),
            ]
        if shown is not None and field.name not in shown:
            kind, info = typing.get_args(annotation)[0], typing.get_args(annotation)[1]
            hidden = copy.copy(info)
            hidden.hidden = True
            annotation = Annotated[kind, hidden]
        parameters.append(
            inspect.Parameter(
                field.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=field.default,
                annotation=annotation,
            )
        )
    return tuple(parameters)


_TYPES = {NUMBER: float, INTEGER: int, FLAG: bool, SWITCH: bool, VECTOR: str | None}


def loss_parameter(option: OptionSpec) -> inspect.Parameter:
    """The command-line parameter of one loss option, from its declaration."""
    flags = f"{option.flag}/--no-{option.flag[2:]}" if option.kind == SWITCH else option.flag
    extra = {"metavar": {VECTOR: "W1,W2,..|PATH", NUMBER: "X", INTEGER: "N"}.get(option.kind)}
    info = typer.Option(flags, help=option.described, rich_help_panel=LOSS_PANEL, **extra)
    return inspect.Parameter(
        option.name,
        inspect.Parameter.KEYWORD_ONLY,
        default=option.default,
        annotation=Annotated[_TYPES[option.kind], info],
    )


class Sources(typer._click.types.ParamType):
    """The positional inputs: text as given, with no type label in the help (the argument's
    name says what it is)."""

    name = "sources"

    def get_metavar(self, param, ctx=None) -> str:
        return ""

    def convert(self, value, param, ctx):
        return value


class InputsCommand(typer.core.TyperCommand):
    """A command whose usage line names its inputs plainly (``PREDICTIONS TARGETS``, not in
    braces)."""

    def collect_usage_pieces(self, ctx) -> list[str]:
        return [piece.strip("{}") for piece in super().collect_usage_pieces(ctx)]


def input_parameters(metavar: str, text: str) -> list[inspect.Parameter]:
    """The context and the positional inputs of a command that reads files."""
    context = inspect.Parameter(
        "ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context
    )
    inputs = inspect.Parameter(
        "inputs",
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        annotation=Annotated[
            list[str],
            typer.Argument(metavar=metavar, help=text, show_default=False, click_type=Sources()),
        ],
    )
    return [context, inputs]
