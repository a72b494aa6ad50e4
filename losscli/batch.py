"""``losscli batch``: many loss jobs in one process, NDJSON in and out (SPEC section 9).

Each line of the jobs file is one object, ``{"loss": "ce", "inputs": ["a.csv", "b.csv"],
"options": {"reduction": "sum", ...}, "id": "..."}``, with the options of the command line by
their long names (underscores or dashes). Each job's result is one line: the ``-f json``
object plus ``id``, or ``{"id", "error": {"message", "exit"}}``, in the order of the jobs.
One bad job never stops the others; the exit code is the highest of the jobs' codes.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, get_args, get_origin

from losscli.errors import EXIT_INTERNAL, InputError, LossCliError, OptionError
from losscli.options import Common
from losscli.registry import get_spec

# Options that shape what a command line prints; a batch always writes one JSON line a job.
OUTPUT_ONLY = frozenset({"format", "quiet", "debug", "per_sample", "steps", "limit"})


@dataclasses.dataclass
class Job:
    """One line of the jobs file, taken apart (or the error that line is)."""

    line: int
    id: Any  # the job's own id, else its line number
    loss: str | None = None
    inputs: list[str] = dataclasses.field(default_factory=list)
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    error: LossCliError | None = None


def parse_jobs(text: str, source: str) -> list[Job]:
    """Every non-blank line as a Job; a line that is not a job becomes a Job with its error."""
    jobs = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        jobs.append(_parse_job(line, number, source))
    return jobs


def _parse_job(line: str, number: int, source: str) -> Job:
    where = f"{source}, line {number}"
    try:
        data = json.loads(line)
    except json.JSONDecodeError as error:
        return Job(number, number, error=InputError(f"{where}: not a JSON object ({error.msg})"))
    if not isinstance(data, dict):
        return Job(number, number, error=InputError(f"{where}: not a JSON object"))
    job = Job(number, data.get("id", number))
    unknown = sorted(set(data) - {"loss", "inputs", "options", "id"})
    loss, inputs, options = data.get("loss"), data.get("inputs"), data.get("options", {})
    if unknown:
        job.error = InputError(f"{where}: unknown key(s) {', '.join(unknown)}")
    elif not isinstance(loss, str):
        job.error = InputError(f"{where}: 'loss' must name a loss, such as \"ce\"")
    elif not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
        job.error = InputError(f"{where}: 'inputs' must be a list of paths")
    elif not isinstance(options, dict):
        job.error = InputError(f"{where}: 'options' must be an object")
    else:
        job.loss, job.inputs = loss, inputs
        job.options = {str(k).lstrip("-").replace("-", "_"): v for k, v in options.items()}
    return job


def _settings(values: dict[str, Any]) -> Common:
    """Common settings from a job's options, checked as the command line parser would."""
    hints = typing.get_type_hints(Common, include_extras=True)
    checked = {}
    for name, value in values.items():
        kind = get_args(hints[name])[0]
        # --reduction is checked against the loss's own reductions (kl-div has batchmean).
        allowed = _literal_values(kind) if name != "reduction" else ()
        if allowed and value is not None and value not in allowed:
            raise OptionError(f"--{name.replace('_', '-')} {value!r} is not one of {allowed}")
        if not _fits(kind, value):
            raise OptionError(f"--{name.replace('_', '-')} {value!r} has the wrong type")
        checked[name] = value
    return Common(**checked)


def _literal_values(kind) -> tuple:
    for part in (kind, *get_args(kind)):
        if get_origin(part) is Literal:
            return get_args(part)
    return ()


def _fits(kind, value) -> bool:
    if value is None:
        return type(None) in get_args(kind) or kind is type(None)
    if _literal_values(kind):
        return True
    types = [t for t in (get_args(kind) or (kind,)) if t is not type(None)]
    if bool in types:
        return isinstance(value, bool)
    if float in types:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if int in types:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, str)


def run_job(job: Job) -> tuple[dict[str, Any], int]:
    """One job's output object and exit code."""
    from losscli import pipeline

    try:
        if job.error is not None:
            raise job.error
        spec = get_spec(job.loss)
        if "-" in job.inputs or any(i.startswith("-?") for i in job.inputs):
            raise OptionError(
                "a batch job cannot read stdin ('-'): the jobs share one process; name a file"
            )
        own = {o.name for o in spec.options}
        fields = {f.name for f in dataclasses.fields(Common)}
        unknown = sorted(set(job.options) - own - fields)
        if unknown:
            raise OptionError(
                f"{spec.name} has no option {', '.join(unknown)}; its options: "
                f"{', '.join(sorted(own)) or 'none'}, and the common ones"
            )
        common = {k: v for k, v in job.options.items() if k in fields and k not in OUTPUT_ONLY}
        settings = _settings(common)
        options = {k: v for k, v in job.options.items() if k in own}
        result, gate = pipeline.run_files(spec, job.inputs, options, settings, stdin=None)
        return {**result.to_dict(), "id": job.id}, pipeline.exit_code(gate)
    except LossCliError as error:
        return _error(job, error.message, error.exit_code)
    except Exception as error:  # one job's bug must not stop the others
        return _error(job, f"internal error ({type(error).__name__}: {error})", EXIT_INTERNAL)


def _error(job: Job, message: str, code: int) -> tuple[dict[str, Any], int]:
    return {"id": job.id, "error": {"message": message, "exit": code}}, code


def run_batch(jobs: list[Job], workers: int, write) -> int:
    """Run the jobs (``workers`` at a time), writing each result line in job order."""
    if workers < 1:
        raise OptionError(f"--jobs {workers} is out of range; valid: >= 1")
    highest = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(run_job, job) for job in jobs]
        for future in futures:
            output, code = future.result()
            write(json.dumps(output, allow_nan=False) + "\n")
            highest = max(highest, code)
    return highest
