"""The ``losscli`` console script and ``python -m losscli``: the signal handlers first, then
the app.

Importing the app (Typer, Rich, the loss registry) and later torch takes a noticeable part of
a second: a SIGINT, SIGTERM or SIGHUP in that time must end as it does later (exit 130 or
128 + the signal, one line, no traceback, nothing written). So this module imports nothing
heavy and installs the handlers before it imports anything else of losscli's.

Its first lines, before any other import of losscli's, set handlers that end the process at
once (nothing is written yet); ``main`` then installs the run's own. A signal that arrives
before this module runs (while the interpreter itself starts) cannot be caught here: SIGTERM
and SIGHUP then end the process with their default action, and SIGINT with Python's own
KeyboardInterrupt.
"""

import os
import signal


def _before_the_handlers(signum, frame) -> None:
    """A signal while this module imports losscli's own (nothing is read or written yet):
    end at once, as a later one ends, with one line."""
    names = {signal.SIGINT: "interrupted"}
    line = names.get(signum, f"terminated: signal {signum}")
    try:  # straight to the descriptor: the signal may come while sys.stderr is mid-write
        os.write(2, f"losscli: {line}\n".encode())
    finally:
        os._exit(130 if signum == signal.SIGINT else 128 + signum)


for _name in ("SIGINT", "SIGTERM", "SIGHUP"):
    if hasattr(signal, _name):
        signal.signal(getattr(signal, _name), _before_the_handlers)


from losscli.errors import Terminated  # noqa: E402
from losscli.signals import (  # noqa: E402
    check_stopped,
    exit_if_stopped,
    ignore_signals,
    install_handlers,
    say_stopped,
)


def _end(signum: int) -> None:
    """End a run stopped outside the app's own handling (while modules import): one line on
    stderr and the exit code."""
    ignore_signals()
    say_stopped(signum)
    exit_if_stopped()


def main() -> None:
    """Install the handlers, then import and run the app (``losscli.cli.main``)."""
    try:
        install_handlers()
        from losscli.cli import main as run

        check_stopped()
        run()
    except KeyboardInterrupt:
        _end(signal.SIGINT)
    except Terminated as stop:
        _end(stop.signum)
    except Exception:
        # An error raised while a stop unwound an import (Python reports a stop inside a
        # class's __set_name__ as a RuntimeError) is the stop; any other is losscli's own.
        exit_if_stopped()
        raise
