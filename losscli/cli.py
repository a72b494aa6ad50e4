"""The Typer app: one small command per loss, the meta commands, errors -> exit codes.

Nothing here imports torch or NumPy at module level: ``--help``, ``list``, ``explain`` and
shell completion stay fast.
"""

import inspect
import sys
from typing import Annotated, Literal

import typer

from losscli import __version__
from losscli.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, LossCliError, Terminated
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
from losscli.registry import LossSpec, get_spec

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


def _guarded(debug: bool, action) -> int:
    """Run ``action``, mapping every failure to its exit code and one line on stderr.

    Python warnings (NumPy's RuntimeWarning, torch's UserWarning) never reach stderr: what
    matters of them is checked and said by losscli itself; --debug shows them.
    """
    import warnings

    from losscli import output

    try:
        with warnings.catch_warnings():
            if not debug:
                warnings.simplefilter("ignore")
            return action()
    except LossCliError as error:
        output.error(error.message)
        return error.exit_code
    except KeyboardInterrupt:
        output.note("interrupted", "")
        return EXIT_INTERRUPTED
    except Terminated as stop:
        output.note("terminated", f"signal {stop.signum}")
        return 128 + stop.signum
    except BrokenPipeError:
        output.silence_stdout()
        return 0
    except Exception as error:
        if debug:
            import traceback

            traceback.print_exc()
        else:
            output.error(
                f"internal error ({type(error).__name__}: {error}); "
                "rerun with --debug to see the traceback"
            )
        return EXIT_INTERNAL


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
        context = inspect.Parameter(
            "ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context
        )

        def command(ctx: typer.Context, **kwargs):
            sources = kwargs.pop("inputs")
            options = {p.name: kwargs.pop(p.name) for p in own if p.name not in COMMON_NAMES}
            settings = Common(**kwargs)
            env = _from_environment(ctx)
            code = _guarded(settings.debug, lambda: run_loss(spec, sources, options, settings, env))
            if code:
                raise typer.Exit(code)

        command.__signature__ = inspect.Signature([context, inputs, *own, *common])
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


# ------------------------------------------------------------------ running a loss


def _from_environment(ctx) -> dict[str, str]:
    """Options whose value came from an environment variable: {name: variable}."""
    found = {}
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name)
        if source is not None and source.name == "ENVIRONMENT" and param.envvar:
            found[param.name] = param.envvar
    return found


def run_loss(
    spec: LossSpec, sources: list[str], options: dict, settings: Common, env: dict[str, str]
) -> int:
    """Read, validate, compute, write --grad-out, print; returns the exit code."""
    from losscli import output, pipeline
    from losscli.io.sources import stdin_fd

    result, gate = pipeline.run_files(
        spec,
        sources,
        options,
        settings,
        stdin=stdin_fd(),
        env=env,
        progress=lambda text: _progress(settings, text),
    )
    if not settings.quiet:
        for message in result.warnings:
            output.warning(message)
    _print_result(result, settings)
    if gate is not None and gate.tripped:
        output.note("gate", gate.reason)
    return pipeline.exit_code(gate)


def _progress(settings: Common, text: str):
    """A transient spinner on stderr while a step runs, only where a person watches it."""
    import contextlib

    from losscli.output import escape

    if settings.quiet or sys.stderr is None or not sys.stderr.isatty():
        return contextlib.nullcontext()
    from rich.console import Console

    console = Console(stderr=True, markup=False, emoji=False, highlight=False)
    return console.status(escape(text), spinner="dots")


def _print_result(result, settings: Common) -> None:
    from losscli import output, render

    if settings.format == "json":
        output.write_stdout(render.render_json(result))
    elif settings.format == "value":
        output.write_stdout(render.render_value(result))
    else:
        output.print_renderables(render.build_tables(result, settings.per_sample, settings.limit))


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


def _raise_terminated(signum, frame) -> None:
    raise Terminated(signum)


def main() -> None:
    """The ``losscli`` entry point: usage errors as one line on stderr, exit 2; closed or
    narrow-encoding streams, a reader that goes away, and SIGTERM/SIGHUP handled."""
    import signal

    from losscli import output

    output.prepare_streams()
    if len(sys.argv) < 3 or {"--help", "-h"} & set(sys.argv):
        # Help is printed by Rich, which ends a help whose reader went away (| head) with
        # exit 1; losscli ends it quietly with 0, as for its own output.
        from rich.console import Console

        Console.on_broken_pipe = output.raise_broken_pipe
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _raise_terminated)
    try:
        code = app(prog_name="losscli", standalone_mode=False)
    except typer.Abort:
        output.note("interrupted", "")
        code = EXIT_INTERRUPTED
    except BrokenPipeError:
        output.silence_stdout()
        code = 0
    except Terminated as stop:
        output.note("terminated", f"signal {stop.signum}")
        code = 128 + stop.signum
    except Exception as error:
        # Click's usage errors (Typer ships its own copy of Click, so match by shape).
        if not (hasattr(error, "format_message") and hasattr(error, "exit_code")):
            raise
        if type(error).__name__ == "NoArgsIsHelpError":
            error.show()
        else:
            ctx = getattr(error, "ctx", None)
            hint = f"; see '{ctx.command_path} --help'" if ctx is not None else ""
            output.error(error.format_message().rstrip(".") + hint)
        code = error.exit_code
    try:
        sys.stdout.flush()
    except (BrokenPipeError, OSError, ValueError):
        output.silence_stdout()
    sys.exit(code or 0)
