"""The Typer app: one small command per loss, the meta commands, errors -> exit codes.

Nothing here imports torch or NumPy at module level: ``--help``, ``list``, ``explain`` and
shell completion stay fast.
"""

import inspect
import signal
import sys
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from losscli import __version__
from losscli.errors import EXIT_INTERRUPTED, LossCliError, Terminated
from losscli.registry import LossSpec, all_specs, get_spec

if TYPE_CHECKING:
    from losscli.options import Common

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
        from losscli import output

        output.write_stdout(f"losscli {__version__}\n")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Compute a PyTorch loss, and its gradient, from files or stdin."""


def _unwrapped(doc: str) -> str:
    """A docstring's paragraphs each on one line, so that the terminal wraps them."""
    return "\n\n".join(" ".join(p.split()) for p in inspect.cleandoc(doc).split("\n\n"))


def _run_guarded(debug: bool, action) -> None:
    """Run a command's ``action`` through ``losscli.guard``; a failure ends the command with its
    exit code."""
    from losscli.guard import guarded

    code = guarded(debug, action)
    if code:
        raise typer.Exit(code)


def add_loss_command(spec: LossSpec, target: typer.Typer, name: str) -> None:
    """Register the command of one loss on ``target`` as ``name`` (its command name or an
    alias): its inputs, its own options (from its OptionSpecs) and the common options,
    running the shared pipeline."""
    from losscli.options import (
        SHOWN,
        Common,
        InputsCommand,
        common_parameters,
        input_parameters,
        loss_parameter,
    )

    inputs = input_parameters(
        spec.metavar,
        "Input files in this order ('-' for stdin; FILE:KEY picks an array of an NPZ, .pt or "
        "safetensors file).",
    )
    own = [loss_parameter(option) for option in spec.options]

    def command(ctx: typer.Context, **kwargs):
        sources = kwargs.pop("inputs")
        options = {option.name: kwargs.pop(option.name) for option in spec.options}
        settings = Common(**kwargs)
        env = _from_environment(ctx)
        _run_guarded(settings.debug, lambda: run_loss(spec, sources, options, settings, env))

    command.__signature__ = inspect.Signature(
        [*inputs, *own, *common_parameters(spec, shown=SHOWN)]
    )
    command.__name__ = spec.name.replace("-", "_")
    text = _command_help(spec)
    target.command(name, help=text, hidden=name != spec.name, cls=InputsCommand)(command)


def _command_help(spec: LossSpec) -> str:
    lines = [f"{spec.torch_class}: {spec.summary}."]
    if spec.aliases:
        lines.append(f"Alias: {', '.join(spec.aliases)}.")
    lines.append("Inputs: " + "; ".join(f"{i.name}: {i.must_be}" for i in spec.inputs) + ".")
    lines.append(f"Example: {spec.example}")
    lines.append(
        f"Learn it: losscli explain {spec.name}. More options (columns, views, blocks, states, "
        "Dask, gates): losscli help options."
    )
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
    spec: LossSpec, sources: list[str], options: dict, settings: "Common", env: dict[str, str]
) -> int:
    """Read, validate, compute, write --grad-out, print; returns the exit code."""
    from losscli import api, output
    from losscli.io.sources import stdin_fd

    result, gate = api.run_files(
        spec,
        sources,
        options,
        settings,
        stdin=stdin_fd(),
        env=env,
        progress=lambda text: output.progress(text, settings.quiet),
    )
    return _report(result, gate, settings)


def _report(result, gate, settings: "Common") -> int:
    """Warnings on stderr, the result on stdout, the gate's line; returns the exit code."""
    from losscli import render

    return _emit(
        result,
        gate,
        settings,
        render.render_value,
        lambda: render.build_tables(result, settings.per_sample, settings.limit),
    )


def _emit(item, gate, settings: "Common", value, tables) -> int:
    """``item``'s warnings on stderr, ``item`` on stdout in --format (JSON from its
    ``to_dict``, ``value(item)``, or the renderables ``tables()``), the gate's line;
    returns the exit code."""
    from losscli import output, render
    from losscli.gate import exit_code
    from losscli.signals import check_stopped

    check_stopped()
    if not settings.quiet:
        for message in item.warnings:
            output.warning(message)
    if settings.format == "json":
        output.write_stdout(render.render_json(item))
    elif settings.format == "value":
        output.write_stdout(value(item))
    else:
        output.print_renderables(tables())
    if gate is not None and gate.tripped:
        output.note("gate", gate.reason)
    return exit_code(gate)


# ------------------------------------------------------------------ compare


class _CompareGroup(typer.core.TyperGroup):
    """``losscli compare``'s commands, one per loss, built when one is asked for: building
    twenty more commands on every start would slow ``--help`` and every loss command."""

    def list_commands(self, ctx) -> list[str]:
        return list(all_specs())

    def get_command(self, ctx, name: str):
        try:
            spec = get_spec(name)
        except LossCliError:
            return None
        single = typer.Typer(add_completion=False)
        add_compare_command(spec, single)
        command = typer.main.get_command(single)
        command.name = name
        return command


compare_app = typer.Typer(
    cls=_CompareGroup,
    name="compare",
    help=(
        "Compare two prediction files on the same targets: both losses, the paired "
        "difference b - a with its 95% interval, and --fail-if-worse MARGIN as a CI gate.\n\n"
        "Example: losscli compare ce old_logits.csv new_logits.csv labels.csv "
        "--fail-if-worse 0.01"
    ),
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(compare_app, name="compare")

# The common options that apply to a comparison (no gradients are computed), and the
# views that compare offers.
# What compare's --help shows of them (the others are accepted: losscli help options).
COMPARE_SHOWN = ("reduction", "device", "dtype", "format", "by_class")


def compare_options() -> tuple[str, ...]:
    from losscli.views import options as view_options

    return (
        "reduction", "device", "dtype", "format", "block_rows", "input_format", "delimiter",
        "header", "classes", "allow_nonfinite", "from_", "quiet", "debug", "report",
        *(option.field for option in view_options("compare")),
    )  # fmt: skip


def add_compare_command(spec: LossSpec, target: typer.Typer) -> None:
    """Register ``losscli compare LOSS A B REST...`` for one loss on ``target``."""
    from losscli.options import (
        Common,
        InputsCommand,
        common_parameters,
        input_parameters,
        loss_parameter,
    )

    rest = " ".join(i.name.upper() for i in spec.inputs[1:])
    inputs = input_parameters(
        f"A B {rest}".strip(),
        "Predictions A, predictions B, then the inputs they share ('-' for stdin).",
    )
    margin = inspect.Parameter(
        "fail_if_worse",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[
            float | None,
            typer.Option(
                "--fail-if-worse",
                metavar="MARGIN",
                help="Exit 1 when b's loss exceeds a's by more than MARGIN (or is NaN).",
            ),
        ],
    )
    own = [loss_parameter(option) for option in spec.options]

    def command(ctx: typer.Context, **kwargs):
        sources = kwargs.pop("inputs")
        worse = kwargs.pop("fail_if_worse")
        options = {option.name: kwargs.pop(option.name) for option in spec.options}
        settings = Common(**kwargs)
        _run_guarded(
            settings.debug, lambda: run_comparison(spec, sources, options, settings, worse)
        )

    command.__signature__ = inspect.Signature(
        [
            *inputs,
            *own,
            *common_parameters(spec, compare_options(), reduced=True, shown=COMPARE_SHOWN),
            margin,
        ]
    )
    command.__name__ = "compare_" + spec.name.replace("-", "_")
    text = (
        f"Compare two sets of predictions with {spec.torch_class}, given the same {rest}: "
        "the loss of A and of B, the paired difference b - a and its 95% interval, a verdict."
        f"\n\nExample: losscli compare {spec.name} A B {rest} --fail-if-worse 0.01"
        "\n\nMore options (columns, views, blocks): losscli help options."
    )
    short = f"{spec.torch_class}: A B {rest}".strip()
    target.command(spec.name, help=text, short_help=short, cls=InputsCommand)(command)


def run_comparison(spec, sources, options, settings: "Common", margin) -> int:
    """Compare, print (warnings, result, the gate's line); returns the exit code."""
    from losscli import output, render
    from losscli.compare import run_compare
    from losscli.io.sources import stdin_fd

    comparison, gate = run_compare(
        spec,
        sources,
        options,
        settings,
        margin,
        stdin=stdin_fd(),
        progress=lambda text: output.progress(text, settings.quiet),
    )
    return _emit(
        comparison,
        gate,
        settings,
        render.render_compare_value,
        lambda: render.compare_tables(comparison),
    )


# ------------------------------------------------------------------ loss commands


# Commands listed by name and help whose options are built when one is run (merge).
_BUILT_LATER: dict = {}


class _LossEntry(typer.core.TyperCommand):
    """A loss command as the list of commands shows it (its name and help), without its
    options: building the options of twenty commands costs every start, so a loss's own
    command is built only when it is run or its --help is asked for (``_Root``)."""


class _Root(typer.core.TyperGroup):
    """losscli's commands: the loss commands first (from the registry, built when asked
    for), then the others."""

    def list_commands(self, ctx) -> list[str]:
        return [*all_specs(), *super().list_commands(ctx)]

    def get_command(self, ctx, name: str):
        command = super().get_command(ctx, name)
        if command is not None:
            return command
        try:
            spec = get_spec(name)
        except LossCliError:
            return None
        return _LossEntry(name, help=_command_help(spec), hidden=name != spec.name)

    def resolve_command(self, ctx, args):
        name, command, rest = super().resolve_command(ctx, args)
        if isinstance(command, _LossEntry):
            single = typer.Typer(add_completion=False)
            build = _BUILT_LATER.get(name, lambda t, n: add_loss_command(get_spec(n), t, n))
            build(single, name)
            command = typer.main.get_command(single)
            command.name = name
        return name, command, rest


app.info.cls = _Root


# ------------------------------------------------------------------ meta commands


@app.command("list")
def list_losses(
    format: Annotated[
        Literal["table", "json"],
        typer.Option(
            "--format", "-f", help="table (Rich), or json (an array of the losses, for scripts)."
        ),
    ] = "table",
) -> None:
    """List every loss: command, aliases, torch class, task, what the inputs must be.

    Example: losscli list -f json
    """
    from losscli.meta import losses_json, losses_table, print_renderable

    def show() -> int:
        if format == "json":
            from losscli import output

            output.write_stdout(losses_json())
        else:
            print_renderable(losses_table())
        return 0

    _run_guarded(False, show)


@app.command("list-formats")
def list_formats(
    format: Annotated[
        Literal["table", "json"],
        typer.Option("--format", "-f", help="table (Rich), or json (an array, for scripts)."),
    ] = "table",
) -> None:
    """List every input format: name, extensions, what it is (--input-format takes the name).

    Example: losscli list-formats -f json
    """
    from losscli.meta import formats_json, formats_table, print_renderable

    def show() -> int:
        if format == "json":
            from losscli import output

            output.write_stdout(formats_json())
        else:
            print_renderable(formats_table())
        return 0

    _run_guarded(False, show)


@app.command("help")
def help_topic(
    topic: Annotated[
        str, typer.Argument(metavar="TOPIC", help="options: every option of the loss commands.")
    ],
) -> None:
    """Help beyond one command's --help: 'losscli help options' lists every option common
    to the loss commands (a loss command's --help shows the few used most).

    Example: losscli help options
    """
    from losscli.meta import options_text, print_text

    _run_guarded(False, lambda: print_text(options_text(topic)) or 0)


@app.command("explain")
def explain(
    loss: Annotated[str, typer.Argument(help="A loss command or alias, e.g. ce.")],
    lang: Annotated[
        Literal["en", "zh"],
        typer.Option(
            "--lang",
            help="Language of the explanation: en (English) or zh (Chinese), "
            "e.g. losscli explain ce --lang zh.",
        ),
    ] = "en",
) -> None:
    """Explain a loss: formula, inputs, steps, common mistakes, and a runnable example.

    Example: losscli explain ce (in Chinese: losscli explain ce --lang zh)
    """
    from losscli.meta import explain_text, print_text

    _run_guarded(False, lambda: print_text(explain_text(get_spec(loss), lang)) or 0)


@app.command("batch")
def batch(
    jobs: Annotated[
        str, typer.Argument(help="A file of jobs, one JSON object a line, or '-' for stdin.")
    ],
    workers: Annotated[
        int, typer.Option("--jobs", "-j", min=1, help="How many jobs run at a time.")
    ] = 1,
) -> None:
    """Run many loss jobs in one process: one JSON job a line in, one JSON result a line out.

    A job: {"loss": "ce", "inputs": ["a.csv", "b.csv"], "options": {"reduction": "sum"},
    "id": "run-1"}. The exit code is the highest of the jobs'.

    Example: losscli batch jobs.ndjson --jobs 2
    """
    from losscli import output
    from losscli.batch import job_lines, jobs_stream, run_batch

    def run() -> int:
        with jobs_stream(jobs) as stream:
            return run_batch(job_lines(stream, jobs), jobs, workers, output.write_stdout, stream)

    _run_guarded(False, run)


def merge_options() -> tuple[str, ...]:
    """The common options that apply to merged states, and the views that merge offers."""
    from losscli.views import options as view_options

    return (
        "format", "fail_above", "fail_below", "quiet", "report",
        *(option.field for option in view_options("merge")),
    )  # fmt: skip


def merge(states: list[str], **options) -> None:
    """Combine the states of runs over parts of the rows into the result of one run.

    Each part is run with --emit-state; the states must be of the same loss, options,
    reduction and dtype, with inputs of the same shape past the first axis.

    Example: losscli ce part1.csv y1.csv --emit-state s1.json; losscli ce part2.csv y2.csv
    --emit-state s2.json; losscli merge s1.json s2.json -f json
    """
    from losscli import report, views
    from losscli import state as states_module
    from losscli.errors import OptionError
    from losscli.gate import gate_of
    from losscli.io.sources import file_identity, read_whole
    from losscli.options import Common
    from losscli.settings import check_settings

    settings = Common(**options)

    def run() -> int:
        check_settings(settings)
        seen: dict = {}
        for path in states:
            identity = file_identity(path)
            if identity in seen:  # its rows would count twice
                raise OptionError(f"{path} and {seen[identity]} are the same state file")
            seen[identity] = path
        page = report.output(settings.report, seen, {})
        loaded = [states_module.load(path, read_whole(path)) for path in states]
        merged = states_module.merge(states, loaded)
        result = states_module.to_result(merged, views.asked(settings))
        gate = gate_of(result, settings)
        report.write(page, result.to_dict(), f"merge of {len(states)} states")
        return _report(result, gate, settings)

    _run_guarded(False, run)


def add_merge_command(target: typer.Typer) -> None:
    """Register ``losscli merge STATES...`` on ``target``, with its options."""
    from losscli.options import common_parameters

    merge.__signature__ = inspect.Signature(
        [
            inspect.Parameter(
                "states",
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                annotation=Annotated[
                    list[str],
                    typer.Argument(help="State files written by --emit-state.", show_default=False),
                ],
            ),
            *common_parameters(None, merge_options()),
        ]
    )
    target.command("merge", help=_unwrapped(merge.__doc__))(merge)


# The command list shows merge from its docstring; its options are built when it is run.
app.command("merge", cls=_LossEntry, help=_unwrapped(merge.__doc__))(lambda: None)
_BUILT_LATER["merge"] = lambda single, name: add_merge_command(single)


def _unwrap_help() -> None:
    """Meta commands take their help from their docstrings, whose lines are wrapped for the
    source: join each paragraph's lines, so that the terminal wraps them instead."""
    for info in app.registered_commands:
        doc = info.callback.__doc__ if info.callback is not None else None
        if info.help is None and doc:
            info.help = _unwrapped(doc)


_unwrap_help()


def main() -> None:
    """Run the app: usage errors as one line on stderr, exit 2; closed or narrow-encoding
    streams, a reader that goes away, and SIGTERM/SIGHUP handled. The console script and
    ``python -m losscli`` come through ``losscli.entry``, which installs the signal handlers
    before this module is imported."""
    from losscli import output
    from losscli.signals import (
        exit_if_stopped,
        ignore_signals,
        install_handlers,
        say_stopped,
        stop_code,
    )

    output.prepare_streams()
    if len(sys.argv) < 3 or {"--help", "-h"} & set(sys.argv):
        # Help is printed by Rich, which ends a help whose reader went away (| head) with
        # exit 1; losscli ends it quietly with 0, as for its own output.
        from rich.console import Console

        Console.on_broken_pipe = output.raise_broken_pipe
    install_handlers()  # already in place through losscli.entry; here for a direct call
    try:
        code = app(prog_name="losscli", standalone_mode=False)
    except typer.Abort:
        say_stopped(signal.SIGINT)
        code = EXIT_INTERRUPTED
    except BrokenPipeError:
        output.silence_stdout()
        code = 0
    except Terminated as stop:
        say_stopped(stop.signum)
        code = stop_code(stop.signum)
    except Exception as error:
        # Click's usage errors (Typer ships its own copy of Click, so match by shape).
        if not (hasattr(error, "format_message") and hasattr(error, "exit_code")):
            exit_if_stopped()  # raised while a stop unwound: the stop
            raise
        if type(error).__name__ == "NoArgsIsHelpError":
            error.show()
        else:
            ctx = getattr(error, "ctx", None)
            hint = f"; see '{ctx.command_path} --help'" if ctx is not None else ""
            if ctx is not None and type(error).__name__ == "MissingParameter":
                sys.stderr.write(ctx.get_usage().strip() + "\n")  # what the command takes
            output.error(error.format_message().rstrip(".") + hint)
        code = error.exit_code
    ignore_signals()
    try:
        sys.stdout.flush()
    except (BrokenPipeError, OSError, ValueError):
        output.silence_stdout()
    exit_if_stopped()
    sys.exit(code or 0)
