"""The Typer app: one small command per loss, the meta commands, errors -> exit codes.

Nothing here imports torch or NumPy at module level: ``--help``, ``list``, ``explain`` and
shell completion stay fast.
"""

import inspect
import os
import sys
import time
from typing import Annotated, Literal

import typer

from losscli import __version__
from losscli.errors import EXIT_GATE, EXIT_INTERNAL, EXIT_INTERRUPTED, LossCliError, OptionError
from losscli.options import (
    COMMON_NAMES,
    LOSS_PANEL,
    Common,
    Flag,
    IgnoreIndex,
    Margin,
    Number,
    Weight,
    common_parameters,
)
from losscli.registry import INDEX, LossSpec, get_spec

app = typer.Typer(
    name="losscli",
    help=(
        "Compute a PyTorch loss, and its gradient, from files or stdin.\n\n"
        "Example: losscli ce sample_data/logits.csv sample_data/labels.csv"
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"losscli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Compute a PyTorch loss, and its gradient, from files or stdin."""


def _error(message: str) -> None:
    sys.stderr.write(f"losscli: error: {message}\n")


def _warn(message: str) -> None:
    sys.stderr.write(f"losscli: warning: {message}\n")


def _guarded(debug: bool, action) -> int:
    """Run ``action``, mapping every failure to its exit code and one line on stderr."""
    try:
        return action()
    except LossCliError as error:
        _error(error.message)
        return error.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("losscli: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return 0
    except Exception as error:
        if debug:
            import traceback

            traceback.print_exc()
        else:
            _error(
                f"internal error ({type(error).__name__}: {error}); "
                "rerun with --debug to see the traceback"
            )
        return EXIT_INTERNAL


def _silence_stdout() -> None:
    """After the reader went away (| head), send the rest of stdout nowhere, quietly."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def loss_command(name: str):
    """Register a loss command: the function names its own options, this adds the inputs
    argument and the common options, and runs the shared pipeline."""
    spec = get_spec(name)

    def decorate(func):
        own = list(inspect.signature(func, eval_str=True).parameters.values())
        own_names = {p.name for p in own}
        inputs = inspect.Parameter(
            "inputs",
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            annotation=Annotated[
                list[str],
                typer.Argument(
                    metavar=spec.metavar,
                    help="Input files in this order ('-' for stdin, 'file.npz:key' for NPZ).",
                    show_default=False,
                ),
            ],
        )
        common = [p for p in common_parameters() if p.name not in own_names]

        def command(**kwargs):
            sources = kwargs.pop("inputs")
            options = {p.name: kwargs.pop(p.name) for p in own if p.name not in COMMON_NAMES}
            settings = Common(**kwargs)
            code = _guarded(settings.debug, lambda: run_loss(spec, sources, options, settings))
            if code:
                raise typer.Exit(code)

        command.__signature__ = inspect.Signature([inputs, *own, *common])
        command.__name__ = func.__name__
        text = _command_help(spec)
        app.command(name, help=text, no_args_is_help=True)(command)
        for alias in spec.aliases:
            app.command(alias, help=text, hidden=True, no_args_is_help=True)(command)
        return func

    return decorate


def _command_help(spec: LossSpec) -> str:
    lines = [f"{spec.torch_class}: {spec.summary}."]
    if spec.aliases:
        lines.append(f"Alias: {', '.join(spec.aliases)}.")
    lines.append("Inputs: " + "; ".join(f"{i.name}: {i.must_be}" for i in spec.inputs) + ".")
    lines.append(f"Example: {spec.example}")
    lines.append(f"Learn it: losscli explain {spec.name}")
    return "\n\n".join(lines)


# ------------------------------------------------------------------ the pipeline


def _input_sources(spec: LossSpec, sources: list[str], settings: Common) -> list[str]:
    """One source per input; in single-file mode the first file gives predictions and targets."""
    count = len(spec.inputs)
    if sources.count("-") > 1:
        raise OptionError(
            "only one input can come from stdin ('-'); write the others to files first"
        )
    single_file = settings.pred_cols is not None and settings.target_cols is not None
    if single_file and len(sources) == count - 1:
        sources = [sources[0], *sources]
    if len(sources) != count:
        names = " ".join(i.name.upper() for i in spec.inputs)
        hint = " (or one table file fewer with --pred-cols and --target-cols)" if count > 1 else ""
        raise OptionError(f"{spec.name} takes {count} input(s): {names}{hint}; got {len(sources)}")
    return sources


def read_inputs(spec: LossSpec, sources: list[str], settings: Common) -> dict:
    """Read every input of ``spec`` from its source, stdin at most once."""
    import numpy as np

    from losscli.io import parse_columns, read_input

    float_dtype = np.float64 if settings.dtype == "float64" else np.float32
    stdin_data = None
    result = {}
    for position, (input_spec, source) in enumerate(zip(spec.inputs, sources)):
        columns = None
        if position == 0:
            columns = parse_columns(settings.pred_cols)
        elif position == 1:
            columns = parse_columns(settings.target_cols)
        stdin = None
        if source == "-":
            if stdin_data is None:
                stdin_data = _stdin_bytes()
            stdin = _Replay(stdin_data)
        result[input_spec.name] = read_input(
            source,
            input_format=settings.input_format,
            delimiter=settings.delimiter,
            header=settings.header,
            columns=columns,
            allow_names=input_spec.role == INDEX,
            float_dtype=float_dtype if input_spec.differentiable else None,
            stdin=stdin,
        )
    return result


class _Replay:
    """Stdin bytes read once, given to each input that names '-' (single-file mode)."""

    def __init__(self, data: bytes):
        self.data = data

    def read(self) -> bytes:
        return self.data


def _stdin_bytes() -> bytes:
    from losscli.errors import InputError

    if sys.stdin is None or sys.stdin.isatty():
        raise InputError(
            "'-' reads from stdin, but stdin is a terminal; pipe the data in "
            "(python predict.py | losscli ...) or pass a file path"
        )
    return sys.stdin.buffer.read()


def _gate(result, settings: Common) -> bool:
    """Whether --fail-above / --fail-below trips (NaN trips either)."""
    import math

    values = result.values()
    if settings.fail_above is not None and any(
        math.isnan(v) or v > settings.fail_above for v in values
    ):
        return True
    return settings.fail_below is not None and any(
        math.isnan(v) or v < settings.fail_below for v in values
    )


def run_loss(spec: LossSpec, sources: list[str], options: dict, settings: Common) -> int:
    """Read, validate, compute, write --grad-out, print; returns the exit code."""
    from losscli.core import compute_inputs
    from losscli.validate import Context

    sources = _input_sources(spec, sources, settings)
    grad_out = None
    if settings.grad_out is not None:
        if settings.no_grad:
            raise OptionError("--grad-out needs the gradient; drop --no-grad")
        from losscli.io import check_grad_out

        grad_out = check_grad_out(settings.grad_out, sources)
    import numpy  # noqa: F401  (imported before torch starts loading beside the readers)

    from losscli import engine

    engine.preload_torch()
    started = time.perf_counter()
    with _progress(settings, f"reading {', '.join(dict.fromkeys(sources))}"):
        inputs = read_inputs(spec, sources, settings)
    read_s = time.perf_counter() - started
    first_float = spec.float_inputs[0]
    if grad_out is not None:
        from losscli.io import check_grad_out_shape

        check_grad_out_shape(grad_out, inputs[first_float].array.shape)
    classes = [c.strip() for c in settings.classes.split(",")] if settings.classes else None
    ctx = Context(
        reduction=settings.reduction, allow_nonfinite=settings.allow_nonfinite, classes=classes
    )
    table = settings.format == "table"
    with _progress(settings, f"computing {spec.torch_class} on {settings.device}"):
        result = compute_inputs(
            spec,
            inputs,
            options,
            ctx,
            device=settings.device,
            dtype=settings.dtype,
            grad=not settings.no_grad,
            keep_rows=settings.limit if settings.per_sample and table else 0,
            steps_limit=settings.limit if settings.steps and table else 0,
            read_s=read_s,
        )
    if grad_out is not None:
        from losscli.io import write_array

        write_array(grad_out, result.gradients[first_float], inputs[first_float].header)
    if not settings.quiet:
        for message in result.warnings:
            _warn(message)
    _print_result(result, settings)
    return EXIT_GATE if _gate(result, settings) else 0


def _progress(settings: Common, text: str):
    """A transient spinner on stderr while a step runs, only where a person watches it."""
    import contextlib

    if settings.quiet or not sys.stderr.isatty():
        return contextlib.nullcontext()
    from rich.console import Console

    console = Console(stderr=True, markup=False, emoji=False, highlight=False)
    return console.status(text, spinner="dots")


def _print_result(result, settings: Common) -> None:
    from losscli import render

    if settings.format == "json":
        sys.stdout.write(render.render_json(result))
    elif settings.format == "value":
        sys.stdout.write(render.render_value(result))
    else:
        render.print_table(result, settings.per_sample, settings.limit, sys.stdout)
    sys.stdout.flush()


# ------------------------------------------------------------------ loss commands


@loss_command("ce")
def ce(
    weight: Weight = None,
    ignore_index: IgnoreIndex = -100,
    label_smoothing: Annotated[
        float,
        typer.Option(
            "--label-smoothing",
            help="Smoothing in [0,1] mixed into the targets.",
            rich_help_panel=LOSS_PANEL,
        ),
    ] = 0.0,
):
    """CrossEntropyLoss."""


@loss_command("nll")
def nll(weight: Weight = None, ignore_index: IgnoreIndex = -100):
    """NLLLoss."""


@loss_command("mse")
def mse():
    """MSELoss."""


@loss_command("l1")
def l1():
    """L1Loss."""


@loss_command("bce")
def bce(weight: Weight = None):
    """BCELoss."""


@loss_command("bce-logits")
def bce_logits(
    weight: Weight = None,
    pos_weight: Annotated[
        str | None,
        typer.Option(
            "--pos-weight",
            metavar="W1,W2,..|PATH",
            help="Weight of positive examples, one per class (column).",
            rich_help_panel=LOSS_PANEL,
        ),
    ] = None,
):
    """BCEWithLogitsLoss."""


@loss_command("huber")
def huber(delta: Number("--delta", "Where the loss turns from quadratic to linear (> 0).") = 1.0):
    """HuberLoss."""


@loss_command("smooth-l1")
def smooth_l1(
    beta: Number("--beta", "Where the loss turns from quadratic to linear (>= 0).") = 1.0,
):
    """SmoothL1Loss."""


@loss_command("kl-div")
def kl_div(
    log_target: Flag("--log-target", "Targets are log-probabilities.") = False,
    reduction: Annotated[
        Literal["mean", "sum", "none", "batchmean"],
        typer.Option(
            "--reduction",
            "-r",
            help="batchmean divides by the batch size: the mathematical KL divergence.",
            rich_help_panel=LOSS_PANEL,
        ),
    ] = "mean",
):
    """KLDivLoss."""


@loss_command("poisson-nll")
def poisson_nll(
    log_input: Annotated[
        bool,
        typer.Option(
            "--log-input/--no-log-input",
            help="Predictions are log-rates (on) or rates (off).",
            rich_help_panel=LOSS_PANEL,
        ),
    ] = True,
    full: Flag("--full", "Add the Stirling approximation term.") = False,
    eps: Number("--eps", "Added to rates before the log with --no-log-input (>= 0).") = 1e-8,
):
    """PoissonNLLLoss."""


@loss_command("gaussian-nll")
def gaussian_nll(
    full: Flag("--full", "Add the constant 0.5 log(2 pi).") = False,
    eps: Number("--eps", "Variances are clamped below at eps (>= 0).") = 1e-6,
):
    """GaussianNLLLoss."""


@loss_command("soft-margin")
def soft_margin():
    """SoftMarginLoss."""


@loss_command("hinge-embedding")
def hinge_embedding(margin: Margin = 1.0):
    """HingeEmbeddingLoss."""


@loss_command("multi-margin")
def multi_margin(
    p: Annotated[
        int,
        typer.Option("--p", help="Exponent of the hinge: 1 or 2.", rich_help_panel=LOSS_PANEL),
    ] = 1,
    margin: Margin = 1.0,
    weight: Weight = None,
):
    """MultiMarginLoss."""


@loss_command("multilabel-margin")
def multilabel_margin():
    """MultiLabelMarginLoss."""


@loss_command("multilabel-soft-margin")
def multilabel_soft_margin(weight: Weight = None):
    """MultiLabelSoftMarginLoss."""


@loss_command("cosine-embedding")
def cosine_embedding(margin: Margin = 0.0):
    """CosineEmbeddingLoss."""


@loss_command("margin-ranking")
def margin_ranking(margin: Margin = 0.0):
    """MarginRankingLoss."""


@loss_command("triplet-margin")
def triplet_margin(
    margin: Margin = 1.0,
    p: Number("--p", "Degree of the pairwise distance norm (> 0).") = 2.0,
    eps: Number("--eps", "Added to differences before the norm (>= 0).") = 1e-6,
    swap: Flag("--swap", "Use the positive-negative distance when it is smaller.") = False,
):
    """TripletMarginLoss."""


@loss_command("ctc")
def ctc(
    blank: Annotated[
        int, typer.Option("--blank", help="Index of the blank label.", rich_help_panel=LOSS_PANEL)
    ] = 0,
    zero_infinity: Flag(
        "--zero-infinity", "Set infinite losses (impossible targets) to 0."
    ) = False,
):
    """CTCLoss."""


# ------------------------------------------------------------------ meta commands


@app.command("list")
def list_losses() -> None:
    """List every loss: command, aliases, torch class, task, what the inputs must be."""
    from losscli.meta import losses_table, print_renderable

    code = _guarded(False, lambda: print_renderable(losses_table()) or 0)
    if code:
        raise typer.Exit(code)


@app.command("explain")
def explain(
    loss: Annotated[str, typer.Argument(help="A loss command or alias, e.g. ce.")],
) -> None:
    """Explain a loss: formula, inputs, steps, common mistakes, and a runnable example.

    Example: losscli explain ce
    """
    from losscli.meta import explain_text, print_renderable

    code = _guarded(False, lambda: print_renderable(explain_text(get_spec(loss))) or 0)
    if code:
        raise typer.Exit(code)


def main() -> None:
    """The ``losscli`` entry point: usage errors as one line on stderr, exit 2."""
    try:
        code = app(prog_name="losscli", standalone_mode=False)
    except typer.Abort:
        sys.stderr.write("losscli: interrupted\n")
        code = EXIT_INTERRUPTED
    except Exception as error:
        # Click's usage errors (Typer ships its own copy of Click, so match by shape).
        if not (hasattr(error, "format_message") and hasattr(error, "exit_code")):
            raise
        if type(error).__name__ == "NoArgsIsHelpError":
            error.show()
        else:
            ctx = getattr(error, "ctx", None)
            hint = f"; see '{ctx.command_path} --help'" if ctx is not None else ""
            _error(error.format_message().rstrip(".") + hint)
        code = error.exit_code
    sys.exit(code or 0)
