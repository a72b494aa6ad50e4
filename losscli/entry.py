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
import os
import signal
import sys

from losscli.errors import EXIT_INTERRUPTED, Terminated

SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")
_STOPPING: list[int] = []


def _stop(signum, frame) -> None:
    """The first SIGINT, SIGTERM or SIGHUP stops the run (KeyboardInterrupt, Terminated);
    later ones are let go, so that the cleanup the first started (removing temporary files)
    is never cut short, and none lands in the interpreter's own shutdown."""
    if _STOPPING:
        return
    _STOPPING.append(signum)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(signum)


def check_stopped() -> None:
    """Raise again the stop of a signal whose exception was lost. A handler's exception is
    raised in whatever Python code runs when the signal arrives; code that swallows every
    error there (a C function that clears the error state of a Python callback, as some
    lookups do during imports) loses it, and the run would go on to the end with every
    later signal let go. Called where a run moves on: after the imports, after torch's,
    before each block, before the result is written. A no-op where no signal came (and in
    the Python API, which installs no handlers)."""
    if _STOPPING:
        signum = _STOPPING[0]
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Terminated(signum)


def install_handlers() -> None:
    """Stop on SIGINT, SIGTERM and SIGHUP through ``_stop`` (SIGHUP last: once its handler
    is in place, so are the others)."""
    for name in SIGNALS:
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _stop)


def ignore_signals() -> None:
    """The run is over: a signal from now on does not interrupt the exit (ignored in C,
    since Python puts its own handlers back to the default while it shuts down)."""
    for name in SIGNALS:
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)


def exit_if_stopped(code: int) -> None:
    """End a run that a signal stopped with ``code``, without the interpreter's shutdown
    (its temporary files are gone: the stop unwound through their cleanup). The shutdown
    would wait for the thread that imports torch in the background (engine.preload_torch),
    which can wait forever on an import lock that the interrupted main thread left held; and
    a module cut off mid-import may leave exit hooks that fail. A no-op without a signal."""
    if not _STOPPING:
        return
    ignore_signals()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


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
