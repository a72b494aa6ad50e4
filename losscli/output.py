"""The one owner of stdout and stderr: stream set-up, escaping of data-derived text, messages.

Text that comes from data (file names, headers, NPZ keys, class names) can hold newlines or
terminal escape sequences. Every message passes through ``escape`` so that it stays one line
and writes nothing but text; the table renderer escapes its cells the same way.
"""

from __future__ import annotations

import contextlib
import os
import sys
import unicodedata

# Categories escaped on output: controls, format characters (bidi overrides), line and
# paragraph separators.
_ESCAPED_CATEGORIES = ("Cc", "Cf", "Zl", "Zp")


def escape(text: str) -> str:
    """``text`` with control, format and separator characters written as escapes."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if unicodedata.category(ch) in _ESCAPED_CATEGORIES or (not ch.isprintable() and ch != " "):
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def _write_err(line: str) -> None:
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass  # stderr closed or gone: the exit code still says what happened


def error(message: str) -> None:
    """One ``losscli: error:`` line on stderr."""
    _write_err(f"losscli: error: {escape(message)}")


def warning(message: str) -> None:
    """One ``losscli: warning:`` line on stderr."""
    _write_err(f"losscli: warning: {escape(message)}")


def note(kind: str, message: str) -> None:
    """One ``losscli: KIND:`` line on stderr (gate, interrupted, terminated)."""
    _write_err(f"losscli: {kind}: {escape(message)}" if message else f"losscli: {kind}")


def prepare_streams() -> None:
    """Make stdout and stderr safe to write: a closed one goes to the null device, and text
    that the terminal's encoding cannot show is written as escapes instead of failing."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is None:
            setattr(sys, name, open(os.devnull, "w"))  # noqa: SIM115 (lives as long as the run)
            continue
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(ValueError, OSError):
                reconfigure(errors="backslashreplace")


def silence_stdout() -> None:
    """After the reader went away (| head), send the rest of stdout nowhere, quietly."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


class _NoProgress:
    """The progress of a run nobody watches."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def start(self, total: int | None) -> None:
        return None

    def advance(self, rows: int) -> None:
        return None


NO_PROGRESS = _NoProgress()


# How long a run goes on after its first block before its progress bar appears; and at the
# latest, how long after it starts.
PROGRESS_DELAY_S = 0.5
PROGRESS_FIRST_BLOCK_S = 3.0


def progress(text: str, quiet: bool):
    """A transient progress bar on stderr while a run reads and computes (rows done, rows/s,
    and the time left where the row count is known), only where a person watches it: never
    in a pipe, never with -q. A context manager giving ``start(total)`` and ``advance(rows)``."""
    if quiet or sys.stderr is None or not sys.stderr.isatty():
        return NO_PROGRESS
    return _RowProgress(text)


class _RowProgress:
    def __init__(self, text: str):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            ProgressColumn,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.text import Text

        class Rows(ProgressColumn):
            def render(self, task) -> Text:
                done = f"{int(task.completed):,}"
                total = f" of {int(task.total):,}" if task.total is not None else ""
                speed = f", {task.speed:,.0f} rows/s" if task.speed else ""
                return Text(f"{done}{total} rows{speed}")

        console = Console(stderr=True, markup=False, emoji=False, highlight=False)
        self.bar = Progress(
            SpinnerColumn(),
            TextColumn(escape(text).replace("[", "\\[")),
            BarColumn(),
            Rows(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self.task = self.bar.add_task(text, total=None)

    def __enter__(self):
        # Shown only for a run that lasts: PROGRESS_DELAY_S after its first block is done
        # (the first block waits for torch's import, which every run pays), or after
        # PROGRESS_FIRST_BLOCK_S where the first block itself is slow. A short run ends
        # before anything is drawn.
        self.timers = [self._later(PROGRESS_FIRST_BLOCK_S)]
        return self

    def _later(self, delay: float):
        import threading

        timer = threading.Timer(delay, self.bar.start)
        timer.daemon = True
        timer.start()
        return timer

    def __exit__(self, *exc) -> None:
        for timer in self.timers:
            timer.cancel()
            timer.join()
        self.bar.stop()

    def start(self, total: int | None) -> None:
        self.bar.update(self.task, total=total)

    def advance(self, rows: int) -> None:
        if len(self.timers) == 1:
            self.timers.append(self._later(PROGRESS_DELAY_S))
        self.bar.advance(self.task, rows)


def write_stdout(text: str) -> None:
    """Write a result (JSON, values, text) to stdout."""
    sys.stdout.write(text)
    sys.stdout.flush()


def print_renderables(renderables: list) -> None:
    """Print Rich renderables to stdout literally (no markup, no emoji). Piped, the output is
    as wide as the widest renderable, so no cell wraps or is cut at 80 columns. In a terminal
    narrower than a table, the table is wrapped or stacked (``losscli.layout``), never cut."""
    from rich.console import Console

    stream = sys.stdout
    console = Console(file=stream, emoji=False, markup=False, highlight=False)
    if not console.is_terminal:
        measuring = Console(file=stream, width=1_000_000)
        width = max(measuring.measure(r).maximum for r in renderables)
        console = Console(
            file=stream, emoji=False, markup=False, highlight=False, width=max(width, 40)
        )
    else:
        from losscli import layout

        renderables = [layout.fit(r, console) for r in renderables]
    console.on_broken_pipe = raise_broken_pipe  # the CLI ends quietly, with its own exit code
    for renderable in renderables:
        console.print(renderable)
    stream.flush()


def raise_broken_pipe(console=None) -> None:
    """Rich's hook for a reader that went away: let the CLI handle it (exit 0, quietly)."""
    raise BrokenPipeError
