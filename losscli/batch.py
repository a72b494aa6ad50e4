"""``losscli batch``: many loss jobs in one process, NDJSON in and out (SPEC section 9).

Each line of the jobs file is one object, ``{"loss": "ce", "inputs": ["a.csv", "b.csv"],
"options": {"reduction": "sum", ...}, "id": "..."}``, with the options of the command line by
their long names (underscores or dashes). Each job's result is one line: the ``-f json``
object plus ``id``, or ``{"id", "error": {"message", "exit"}}``, in the order of the jobs.
One bad job never stops the others; the exit code is the highest of the jobs' codes.

Jobs are read and run as they come (a pipe of jobs gets its results as it goes), with at most
a few jobs in flight, so memory does not grow with the number of jobs.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from losscli.errors import EXIT_INTERNAL, InputError, LossCliError, OptionError
from losscli.io import ReadOptions, parse_source
from losscli.registry import get_spec

# Options that shape what a command line prints; a batch always writes one JSON line a job.
OUTPUT_ONLY = frozenset({"format", "quiet", "debug", "per_sample", "steps", "limit"})
BOM = "\ufeff"


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def parse_job(line: str, number: int, source: str) -> dict[str, Any]:
    """One line as a job; raises InputError naming the line where it is not one."""
    where = f"{source}, line {number}"
    try:
        data = json.loads(line, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as error:  # JSONDecodeError, huge numbers, NaN
        detail = getattr(error, "msg", None) or str(error).splitlines()[0][:80]
        raise InputError(f"{where}: not a JSON object ({detail})") from None
    if not isinstance(data, dict):
        raise InputError(f"{where}: not a JSON object")
    unknown = sorted(set(data) - {"loss", "inputs", "options", "id"})
    loss, inputs, options = data.get("loss"), data.get("inputs"), data.get("options", {})
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(unknown)}")
    if not isinstance(loss, str):
        raise InputError(f"{where}: 'loss' must name a loss, such as \"ce\"")
    if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
        raise InputError(f"{where}: 'inputs' must be a list of paths")
    if not isinstance(options, dict):
        raise InputError(f"{where}: 'options' must be an object")
    return data


def _identity(path: str | int) -> tuple[int, int] | None:
    try:
        info = os.fstat(path) if isinstance(path, int) else os.stat(path)
    except (OSError, ValueError):
        return None
    return info.st_dev, info.st_ino


def run_job(
    line: str, number: int, source: str, protected: dict[tuple[int, int], str]
) -> tuple[dict[str, Any], int]:
    """One job's output object and exit code; never raises. ``protected``: files the batch
    itself reads (its jobs file, stdin), which a job may neither read nor replace."""
    from losscli.api import run_files
    from losscli.gate import exit_code
    from losscli.settings import split_settings

    job_id: Any = number
    try:
        job = parse_job(line, number, source)
        job_id = job.get("id", number)
        spec = get_spec(job["loss"])
        for text in job["inputs"]:
            path = parse_source(text, ReadOptions()).path
            if path == "-" or _identity(path) in protected:
                raise OptionError(
                    f"a batch job cannot read stdin or the jobs file ({text}): the jobs share "
                    "one process; name another file"
                )
        settings, options, env = split_settings(
            spec, job.get("options", {}), dict(os.environ), OUTPUT_ONLY
        )
        result, gate = run_files(
            spec, job["inputs"], options, settings, stdin=None, env=env, also_read=protected
        )
        return {**result.to_dict(), "id": job_id}, exit_code(gate)
    except LossCliError as error:
        return _error(job_id, error.message, error.exit_code)
    except Exception as error:  # one job's bug must not stop the others
        return _error(job_id, f"internal error ({type(error).__name__}: {error})", EXIT_INTERNAL)


def _error(job_id: Any, message: str, code: int) -> tuple[dict[str, Any], int]:
    return {"id": job_id, "error": {"message": message, "exit": code}}, code


def _line(output: dict[str, Any]) -> str:
    try:
        return json.dumps(output, allow_nan=False) + "\n"
    except (TypeError, ValueError):  # an id JSON cannot hold as it is
        output = {**output, "id": str(output.get("id"))}
        return json.dumps(output, allow_nan=False, default=str) + "\n"


def job_lines(stream, source: str):
    """(line number, text) of each non-blank line of a binary stream, split at \\n only."""
    for number, raw in enumerate(stream, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            yield number, None
            continue
        if number == 1:
            text = text.removeprefix(BOM)
        if text.strip():
            yield number, text


def run_batch(lines, source: str, workers: int, write, stream=None) -> int:
    """Run the jobs (``workers`` at a time), writing each result line in job order as soon as
    it and the ones before it are done; at most ``2 * workers`` jobs wait for the writer."""
    pool = ThreadPoolExecutor(max_workers=workers)
    results: queue.Queue = queue.Queue(maxsize=2 * workers)
    protected = {
        identity: label
        for identity, label in ((_identity(0), "stdin"), (_stream_identity(stream), source))
        if identity is not None
    }
    outcome = {"highest": 0, "error": None}

    def writer() -> None:
        while (future := results.get()) is not None:
            if outcome["error"] is not None:
                continue  # drain, so that the reader never blocks
            try:
                output, code = future.result()
                write(_line(output))
                outcome["highest"] = max(outcome["highest"], code)
            except BaseException as error:  # a closed stdout: stop, and say so to the reader
                outcome["error"] = error

    thread = threading.Thread(target=writer, name="losscli-batch-writer")
    thread.start()
    try:
        for number, text in lines:
            if outcome["error"] is not None:
                break
            if text is None:
                results.put(_done(_error(number, f"{source}, line {number}: not UTF-8", 2)))
            else:
                results.put(pool.submit(run_job, text, number, source, protected))
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)  # Ctrl-C, SIGTERM
        outcome["error"] = outcome["error"] or KeyboardInterrupt()
        raise
    finally:
        results.put(None)
        thread.join()
        pool.shutdown(wait=outcome["error"] is None, cancel_futures=True)
    if outcome["error"] is not None:
        raise outcome["error"]
    return outcome["highest"]


def _stream_identity(stream) -> tuple[int, int] | None:
    try:
        return _identity(stream.fileno()) if stream is not None else None
    except (OSError, ValueError, AttributeError):
        return None


def _done(value):
    from concurrent.futures import Future

    future: Future = Future()
    future.set_result(value)
    return future


def jobs_stream(path: str):
    """The jobs file, or stdin, as a binary stream read line by line."""
    import contextlib

    from losscli.errors import InputError
    from losscli.io.sources import os_error

    if path == "-":
        if sys.stdin is None or getattr(sys.stdin, "buffer", None) is None:
            raise InputError("'-' reads the jobs from stdin, but stdin is closed")
        if sys.stdin.isatty():
            raise InputError("'-' reads the jobs from stdin, but stdin is a terminal; pipe them in")
        return contextlib.nullcontext(sys.stdin.buffer)
    if os.path.isdir(path):
        raise InputError(f"{path}: cannot read: Is a directory")
    try:
        return open(path, "rb")  # noqa: SIM115 (closed by the caller's with)
    except OSError as error:
        raise os_error(path, error) from None
