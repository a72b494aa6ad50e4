"""The report's renderer, in a process of its own: started when --report is checked, it
imports Matplotlib and draws a small chart of each kind (``charts.warm``) while the run
computes, then waits for the result's JSON object on stdin and answers with the page.

Why a process and not a thread: importing Matplotlib is Python code that holds the GIL, as
does torch's import on its own background thread (``torch_loader``); in a thread the two
imports take turns and the run waits for both. A process imports on another core.

Protocol: stdin gets one JSON object ``{"data": RESULT, "command": TEXT}`` and is closed;
stdout answers one JSON object, ``{"html": PAGE}`` or ``{"error": MESSAGE, "exit": CODE}``.
A closed stdin with nothing on it (the run failed) ends the worker quietly. The worker
ignores Ctrl-C (the terminal sends it to the whole process group): the run decides, and an
interrupted run closes the pipe.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from losscli.errors import EXIT_INTERNAL, LossCliError


class Renderer:
    """A worker process started now, asked for one page later (``render``); killed where it
    is never asked (a run that fails)."""

    def __init__(self) -> None:
        # The folder that holds this losscli, so that the worker imports the same one.
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}
        # The charts are drawn to SVG by the canvas itself: no backend of the user's (a
        # notebook's, or a wrong name) is imported or checked.
        env["MPLBACKEND"] = "agg"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "losscli.report.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )

    def render(self, data: dict[str, Any], command: str) -> str:
        """The page of ``data``; LossCliError with the worker's message where it failed."""
        request = json.dumps({"data": data, "command": command}, allow_nan=False)
        out, _ = self.process.communicate(request.encode("utf-8"))
        try:
            answer = json.loads(out.decode("utf-8"))
        except ValueError:
            raise LossCliError(
                f"--report: the renderer ended without a page (exit {self.process.returncode})",
                EXIT_INTERNAL,
            ) from None
        if "error" in answer:
            message = answer["error"]
            said = message.startswith("--report")  # losscli's own message names the option
            raise LossCliError(message if said else f"--report: {message}", answer["exit"])
        return answer["html"]

    def close(self) -> None:
        process = getattr(self, "process", None)  # none where it could not be started
        if process is None:
            return
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdin, process.stdout):
            if stream is not None and not stream.closed:
                stream.close()

    def __del__(self) -> None:
        self.close()


def main() -> None:
    import contextlib
    import signal

    from losscli.report import charts
    from losscli.report.page import build

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        # Below the run's priority: where the cores are few, the run's own work comes first,
        # and the worker takes the time the run leaves (while it reads, and at its end).
        os.nice(10)
    try:
        charts.warm()
        from losscli import views

        views.all_views()  # the sections' makers, imported before the result comes
        request = sys.stdin.buffer.read()
        if not request:
            return
        request = json.loads(request.decode("utf-8"))
        answer = {"html": build(request["data"], request["command"])}
    except LossCliError as error:
        answer = {"error": error.message, "exit": error.exit_code}
    except Exception as error:
        answer = {"error": f"{type(error).__name__}: {error}", "exit": EXIT_INTERNAL}
    try:
        sys.stdout.write(json.dumps(answer))
        sys.stdout.flush()
    except (BrokenPipeError, OSError, ValueError):  # the run went away
        pass
    # The run waits for this process to end: skip tearing Matplotlib down (a tenth of a
    # second), there is nothing left to flush or close.
    os._exit(0)


if __name__ == "__main__":
    main()
