"""``losscli compare``: two prediction sets on the same targets, read in lockstep."""

from __future__ import annotations

import itertools
import math
from typing import Any

from losscli import plan
from losscli.errors import InputError, OptionError
from losscli.gate import Gate
from losscli.options import Common
from losscli.output import NO_PROGRESS
from losscli.plan import open_all, parse_sources, run_context, vector_options
from losscli.registry import (
    LossSpec,
)
from losscli.run import BlockPipeline, needs_whole
from losscli.settings import check_options, check_settings


def _same_shape(a, b) -> None:
    """Refuse predictions A and B of different shapes (a model with another class count):
    each side alone may suit the targets, but their losses would not measure the same task.
    Blocks read in lockstep have the same rows, so a block's other axes are compared (rows
    that differ are refused by the lockstep read, with both counts)."""
    if a.array.shape == b.array.shape:
        return
    raise InputError(
        f"A ({a.source}) has shape {a.shape} and B ({b.source}) has shape {b.shape}: "
        "compare needs two prediction sets of the same shape"
    )


def run_compare(
    spec: LossSpec,
    source_texts: list[str],
    options: dict[str, Any],
    settings: Common,
    margin: float | None,
    *,
    stdin=0,
    progress=None,
):
    """The loss of predictions A and of predictions B on the same targets, read once in
    lockstep, and the paired difference b - a of their unreduced losses (its standard error
    and 95% interval); returns (Comparison, Gate or None) for --fail-if-worse MARGIN."""
    from losscli import report, torch_loader, views
    from losscli.io import Blocks, SourceSet
    from losscli.stream import whole

    progress = progress or (lambda text: NO_PROGRESS)
    classes = check_settings(settings)
    asked = views.asked(settings, spec)
    if margin is not None and not math.isfinite(margin):
        raise OptionError(f"--fail-if-worse {margin} is not a finite number")
    if settings.reduction == "none":
        raise OptionError("compare needs a reduced loss (--reduction mean, sum or batchmean)")
    count = len(spec.inputs)
    if len(source_texts) != count + 1:
        rest = " ".join(i.name.upper() for i in spec.inputs[1:])
        raise OptionError(
            f"compare {spec.name} takes {count + 1} inputs: A B {rest} (two prediction files, "
            f"then what they share); got {len(source_texts)}"
        )
    defaults, parsed = parse_sources(source_texts, settings)
    args = [parsed[text] for text in source_texts]
    first = spec.inputs[0].name
    b_name = f"{first} (b)"
    slots = [(first, 0), (b_name, 0), *((i.name, p) for p, i in enumerate(spec.inputs) if p)]
    notes: list[str] = []
    with SourceSet(stdin_fd=stdin) as sources:
        torch_loader.preload_torch()
        open_all(sources, args)
        report_out = report.output(settings.report, sources.identities, {})
        options = check_options(
            spec, vector_options(spec, options, sources, defaults, notes), settings.reduction
        )
        contexts = [run_context(settings, classes, notes), run_context(settings, classes, [])]
        blocks = plan.read_inputs(spec, args, sources, settings, Blocks(settings.block_rows), slots)
        joined = next(blocks)
        if needs_whole(spec, joined, options, settings.from_):
            joined, blocks = whole(joined, blocks), iter(())
        _same_shape(joined[first], joined[b_name])
        headers = [joined[first].header, joined[b_name].header]
        if None not in headers and headers[0] != headers[1]:
            raise InputError(
                f"A ({joined[first].source}) and B ({joined[b_name].source}) name their columns "
                f"differently ({', '.join(headers[0])} / {', '.join(headers[1])}): compare needs "
                "the same classes in the same order"
            )

        def sides(block):
            a = {n: block[n] for n in spec.input_names}
            return a, {**a, first: block[b_name]}

        runs = [
            BlockPipeline(
                spec,
                side,
                options,
                ctx,
                device=settings.device,
                dtype=settings.dtype,
                grad=False,
                convert_from=settings.from_,
                asked=asked,
            )  # fmt: skip
            for side, ctx in zip(sides(joined), contexts)
        ]
        paired = views.Moments()  # of b - a, sample by sample
        with progress(f"compare {spec.name} on {settings.device}") as tracker:
            tracker.start(joined[first].rows)
            for block in itertools.chain([joined], blocks):
                _same_shape(block[first], block[b_name])
                for run, side in zip(runs, sides(block)):
                    run.add(side)
                a, b = (run.last_block.samples for run in runs)
                paired.add(b - a)
                rows = block[first].array
                tracker.advance(len(rows) if rows.ndim else 1)
        results = [run.finish() for run in runs]
    a, b = results
    uncertainty = views.standard_error(
        paired, settings.reduction, a.options, spec.mean_scale is not None
    )
    # Where the difference is a plain mean, the mean of the paired differences: exact where
    # b - a of two large values would cancel.
    difference = paired.mean if "stderr" in uncertainty else b.value - a.value
    comparison = views.Comparison(a, b, difference, uncertainty)
    for view in views.all_views():
        if view.name in a.views and view.name in b.views:
            compared = view.compare(a.views[view.name], b.views[view.name])
            if compared is not None:
                comparison.views[view.name] = compared
    gate = None
    if margin is not None:
        worse = comparison.value
        tripped = not worse <= margin  # NaN trips
        reason = None
        if tripped:
            reason = (
                f"b is worse than a by {worse!r} (more than --fail-if-worse {margin!r})"
                if worse == worse
                else f"the difference is NaN (trips --fail-if-worse {margin!r})"
            )
        gate = Gate(None, None, tripped, reason)
        comparison.gate = {"fail_if_worse": margin, "tripped": tripped, "reason": reason}
    report.write(report_out, comparison.to_dict(), f"compare {spec.name}")
    return comparison, gate
