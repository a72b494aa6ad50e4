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
    """The process: install the handlers, import and run the app (``losscli.cli.main``), and
    end with its exit code. A run that ends with an exit code ends the process at once, once
    stdout and stderr are flushed (``_end_process``); a bug's traceback ends it as Python
    does."""
    _one_malloc_arena()
    try:
        _run()
    except SystemExit as done:
        _end_process(done.code)
    _end_process(0)


def _one_malloc_arena() -> None:
    """glibc's malloc gives each thread that allocates an arena of its own, and memory freed
    in one arena serves only that arena's threads: the threads that read blocks ahead would
    each keep a block or two of freed memory (about 100 MB more at the peak of a 20M-row
    run, and slower). One arena for the process, set before any thread starts; a
    MALLOC_ARENA_MAX of the user's decides instead, and elsewhere than glibc nothing
    changes."""
    import sys

    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return
    try:
        import ctypes

        ctypes.CDLL(None).mallopt(-8, 1)  # M_ARENA_MAX (malloc.h)
    except (OSError, AttributeError):
        pass


def _run() -> None:
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


# Threads that may be cut short at exit: torch importing for a run that ended early.
_NOT_AWAITED = {"losscli-import-torch"}


def _end_process(code) -> None:
    """Exit with ``code`` (SystemExit's: None is 0, text is said on stderr and is 1) without
    Python's teardown of the interpreter, which takes half a second once torch is imported.

    Nothing is lost by it: every file a run writes is closed (and renamed into place) before
    its command returns, the functions registered with ``atexit`` run, and stdout and
    stderr are flushed here. Python's own exit is kept where its teardown has work to do: a
    thread still running that is not torch's import (a batch job's), a Dask client (which
    closes its cluster at exit), or a stream that cannot be flushed (Python says so and
    exits 120)."""
    import atexit
    import sys
    import threading

    if code is not None and not isinstance(code, int):
        sys.exit(code)
    ignore_signals()  # the run is over: a signal now must not cut the flush short
    current = threading.current_thread()
    running = [
        t
        for t in threading.enumerate()
        if t is not current and not t.daemon and t.name not in _NOT_AWAITED
    ]
    if running or "distributed" in sys.modules:
        sys.exit(code)
    getattr(atexit, "_run_exitfuncs", lambda: None)()
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except (OSError, ValueError):
        sys.exit(code)
    os._exit(code or 0)
