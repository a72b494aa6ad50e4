"""The ``losscli`` console script and ``python -m losscli``: the signal handlers first, then
the app.

Importing the app (Typer, Rich, the loss registry) and later torch takes a noticeable part of
a second: a SIGINT, SIGTERM or SIGHUP in that time must end as it does later (exit 130 or
128 + the signal, one line, no traceback, nothing written). So this module imports nothing
heavy and installs the handlers before it imports anything else of losscli's.

A signal that arrives before this module runs (while the interpreter itself starts, before
any code of losscli's) cannot be caught here: SIGTERM and SIGHUP then end the process with
their default action, and SIGINT with Python's own KeyboardInterrupt.
"""

import contextlib
import sys

from losscli.errors import EXIT_INTERRUPTED, Terminated
from losscli.signals import check_stopped, exit_if_stopped, ignore_signals, install_handlers


def _end(code: int, line: str) -> None:
    """End a run stopped outside the app's own handling (while modules import): one line on
    stderr and the exit code."""
    ignore_signals()
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(line + "\n")
    exit_if_stopped(code)


def main() -> None:
    """Install the handlers, then import and run the app (``losscli.cli.main``)."""
    try:
        install_handlers()
        from losscli.cli import main as run

        check_stopped()
        run()
    except KeyboardInterrupt:
        _end(EXIT_INTERRUPTED, "losscli: interrupted")
    except Terminated as stop:
        _end(128 + stop.signum, f"losscli: terminated: signal {stop.signum}")
