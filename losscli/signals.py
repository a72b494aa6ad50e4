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
_SAID: list[bool] = []


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


def stop_signal() -> int | None:
    """The signal that stopped the run, or None. An exception raised while the stop unwinds
    (a class whose ``__set_name__`` the stop cut short is reported as a RuntimeError) is the
    stop, not a failure of its own."""
    return _STOPPING[0] if _STOPPING else None


def stop_code(signum: int) -> int:
    """The exit code of a run stopped by ``signum``: 130 for SIGINT, 128 + the signal."""
    return 130 if signum == signal.SIGINT else 128 + signum


def say_stopped(signum: int) -> None:
    """The one line of a stopped run on stderr, ``losscli: interrupted`` (SIGINT) or
    ``losscli: terminated: signal N``; said once, whichever layer catches the stop first."""
    if _SAID:
        return
    _SAID.append(True)
    line = "interrupted" if signum == signal.SIGINT else f"terminated: signal {signum}"
    with contextlib.suppress(OSError, ValueError, AttributeError):
        sys.stderr.write(f"losscli: {line}\n")
        sys.stderr.flush()


def exit_if_stopped() -> None:
    """End a run that a signal stopped, with the stop's own exit code and its one line (if
    no layer said it: a stop that the command-line framework turned into an exit code
    arrives here unsaid), without the interpreter's shutdown
    (its temporary files are gone: the stop unwound through their cleanup). The shutdown
    would wait for the thread that imports torch in the background (torch_loader.preload_torch),
    which can wait forever on an import lock that the interrupted main thread left held; and
    a module cut off mid-import may leave exit hooks that fail. A no-op without a signal."""
    if not _STOPPING:
        return
    ignore_signals()
    say_stopped(_STOPPING[0])
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(stop_code(_STOPPING[0]))
