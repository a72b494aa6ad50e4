"""Stopping on SIGINT, SIGTERM and SIGHUP: the handlers, and the checks that make a signal
end the run the same way whenever it comes. A leaf module (the entry point installs the
handlers before anything heavy is imported; the run checks for a stop as it moves on).
"""

import contextlib
import os
import signal
import sys

from losscli.errors import Terminated

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


def _unraisable(unraisable) -> None:
    """Python's hook for an exception it cannot raise (one from a callback of the import
    machinery or a finalizer): the stop that ``_stop`` raised there is not printed as
    "Exception ignored"; ``check_stopped`` raises it again at the run's next step."""
    if _STOPPING and isinstance(unraisable.exc_value, (KeyboardInterrupt, Terminated)):
        return
    sys.__unraisablehook__(unraisable)


def install_handlers() -> None:
    """Stop on SIGINT, SIGTERM and SIGHUP through ``_stop`` (SIGHUP last: once its handler
    is in place, so are the others)."""
    sys.unraisablehook = _unraisable
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
    would wait for the thread that imports torch in the background (torch_loader.preload_torch),
    which can wait forever on an import lock that the interrupted main thread left held; and
    a module cut off mid-import may leave exit hooks that fail. A no-op without a signal."""
    if not _STOPPING:
        return
    ignore_signals()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
