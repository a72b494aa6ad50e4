"""The Python API (``losscli.compute``, ``losscli.compute_files``) and the one place that
picks the local or the Dask runner (``run_files``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from losscli.errors import OptionError
from losscli.io import InputArray
from losscli.options import Common
from losscli.output import NO_PROGRESS
from losscli.registry import (
    LossSpec,
    get_spec,
)
from losscli.result import Result
from losscli.run import compute_inputs
from losscli.settings import check_settings, split_settings
from losscli.validate import Context


def run_files(
    spec: LossSpec,
    source_texts: list[str],
    options: dict[str, Any],
    settings: Common,
    *,
    stdin=0,
    env: dict[str, str] | None = None,
    progress=None,
    also_read: dict[tuple[int, int], str] | None = None,
    keep_gradients: bool = False,
):
    """Compute ``spec``'s loss over the files ``source_texts``, on a Dask cluster where
    --dask names one, else in this process; returns (Result, Gate or None).
    ``progress(text)`` is a context manager giving an object with ``start(total)`` and
    ``advance(rows)``. ``also_read``: identities of other files the run reads (a batch's jobs
    file), which --grad-out must not replace either. ``keep_gradients`` keeps the whole
    gradients in the Result (the Python API), which memory then holds."""
    from losscli import run

    if settings.dask is None:
        return run.run_local(
            spec, source_texts, options, settings, stdin=stdin, env=env, progress=progress,
            also_read=also_read, keep_gradients=keep_gradients,
        )  # fmt: skip
    from losscli import cluster, report, views
    from losscli.io import check_output_path

    check_settings(settings)
    views.asked(settings, spec)  # refuses a view the loss has not
    cluster.check_address(settings.dask, (env or {}).get("dask"))
    state_out = None
    if settings.emit_state is not None:  # checked before any task runs
        state_out = check_output_path("--emit-state", settings.emit_state, {}, (".json",))
    report_out = report.output(settings.report, {}, {"--emit-state": state_out})
    result, gate = cluster.run(
        spec, source_texts, options, settings, progress or (lambda text: NO_PROGRESS)
    )
    if state_out is not None:
        run.write_state(state_out, result)
    report.write(report_out, result.to_dict(), spec.name)
    return result, gate


def compute_files(loss: str, *sources: str, stdin=None, **settings_and_options: Any):
    """Compute ``loss`` from files, as the command line does: ``compute_files("ce",
    "logits.csv", "labels.csv", reduction="sum", weight="1,2,1")``. Common options go by
    their long names (``dtype``, ``pred_cols``, ``grad_out``...), loss options by their torch
    names; ``stdin`` is a binary file that a source ``-`` reads. Returns the Result (its
    ``gate`` says whether a gate tripped)."""
    import os

    spec = get_spec(loss)
    settings, options, _ = split_settings(spec, settings_and_options)
    texts = [os.fspath(source) for source in sources]
    result, _ = run_files(spec, texts, options, settings, stdin=stdin, keep_gradients=True)
    return result


def compute(
    loss: str,
    *inputs: Any,
    reduction: str = "mean",
    device: str = "cpu",
    dtype: str = "float32",
    grad: bool = True,
    allow_nonfinite: bool = False,
    classes: list[str] | None = None,
    **options: Any,
) -> Result:
    """Compute a loss from array-likes; see ``losscli.compute``."""
    from losscli.registry import get_spec

    spec = get_spec(loss)
    if len(inputs) != len(spec.inputs):
        raise OptionError(
            f"{spec.name} takes {len(spec.inputs)} inputs ({', '.join(spec.input_names)}); "
            f"got {len(inputs)}"
        )
    arrays = {}
    for input_spec, value in zip(spec.inputs, inputs):
        array = np.asarray(value)
        if array.dtype.kind not in "biufOUS":
            raise OptionError(f"{input_spec.name}: dtype {array.dtype} is not numeric")
        if array.dtype.kind == "b":
            array = array.astype(np.float64)
        arrays[input_spec.name] = InputArray("array", array)
    ctx = Context(
        reduction=reduction, allow_nonfinite=allow_nonfinite, classes=classes, dtype=dtype
    )
    return compute_inputs(spec, arrays, options, ctx, device=device, dtype=dtype, grad=grad)
