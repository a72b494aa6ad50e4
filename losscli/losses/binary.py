"""BCELoss: binary cross-entropy of probabilities."""

from __future__ import annotations

from typing import TYPE_CHECKING

from losscli.errors import OptionError
from losscli.losses.regression import SAME_SHAPE, element_rows
from losscli.registry import FLOAT, Explain, InputSpec, LossSpec
from losscli.steps import Steps

if TYPE_CHECKING:
    from losscli.validate import Context, Prepared


def element_weight(option: str, value, shape: tuple[int, ...]):
    """A per-element --weight that broadcasts to ``shape``: one per column, or one per row of
    1-D predictions. Returns (weight, whether it follows the rows)."""
    from losscli.validate import float_vector

    weight = float_vector(option, value)
    if weight is None:
        return None, False
    per_row = len(shape) == 1 and len(weight) == shape[0] and shape[0] != 1
    trailing = shape[-1] if shape else 1
    if per_row or len(weight) in (1, trailing):
        return weight, per_row
    raise OptionError(
        f"{option} has {len(weight)} entries; for predictions of shape {list(shape)} it needs "
        f"1 or {trailing} (one per column)" + (" or one per row" if len(shape) == 1 else "")
    )


def _prepare_bce(inputs, options, ctx: Context) -> Prepared:
    from losscli.validate import Prepared, check_finite, in_unit_interval, same_shape

    preds, targets = inputs["predictions"], inputs["targets"]
    check_finite("predictions", preds, ctx)
    check_finite("targets", targets, ctx)
    target_array = same_shape(("predictions", preds), ("targets", targets), SAME_SHAPE, ctx)
    targets.array = target_array
    in_unit_interval("prediction", preds, "bce needs probabilities; for logits use bce-logits")
    in_unit_interval("target", targets, "bce targets are probabilities in [0, 1]")
    p = preds.array
    exact = int(((p == 0) | (p == 1)).sum())
    if exact:
        ctx.warn(
            f"{exact} bce prediction(s) are exactly 0 or 1: torch clamps log(p) and log(1-p) "
            "at -100, so such a loss is capped at 100 per element"
        )
    weight, per_row = element_weight("--weight", options["weight"], p.shape)
    prepared = Prepared({"predictions": p, "targets": target_array}, {"weight": weight})
    if per_row:
        prepared.row_options.add("weight")
    return prepared


def _steps_bce(arrays, options, limit) -> Steps:
    import numpy as np

    preds, targets = element_rows(arrays, limit)
    steps = Steps(["element", "p", "y", "-(y log p + (1-y) log(1-p))"])
    log_p = np.maximum(np.log(np.where(preds > 0, preds, 1.0)), -100.0)
    log_p[preds == 0] = -100.0
    log_q = np.maximum(np.log(np.where(preds < 1, 1 - preds, 1.0)), -100.0)
    log_q[preds == 1] = -100.0
    for i, (p, y) in enumerate(zip(preds, targets)):
        steps.rows.append([i + 1, p, y, -(y * log_p[i] + (1 - y) * log_q[i])])
    if options["weight"] is not None:
        steps.notes.append("each element's loss is then multiplied by its --weight")
    return steps


BCE = LossSpec(
    name="bce",
    torch_class="BCELoss",
    task="binary / multi-label classification",
    summary="binary cross-entropy of probabilities against targets in [0,1]",
    inputs=(
        InputSpec("predictions", FLOAT, "probabilities in [0,1] (sigmoid output), any shape"),
        InputSpec("targets", FLOAT, "values in [0,1], the predictions' shape"),
    ),
    options={"weight": None},
    prepare=_prepare_bce,
    steps=_steps_bce,
    example="losscli bce sample_data/bce_probs.csv sample_data/bce_targets.csv",
    explain=Explain(
        formula=(
            "loss_j = -w_j * (y_j log p_j + (1 - y_j) log(1 - p_j)), logs clamped at -100\n"
            "mean = sum_j loss_j / numel"
        ),
        steps=(
            "for each element, take log p where the target is 1 and log(1-p) where it is 0",
            "mix them by the target: y log p + (1-y) log(1-p), and negate",
            "multiply by --weight if given (one per column, or one per row of 1-D inputs)",
            "reduce: mean divides by the number of elements",
        ),
        mistakes=(
            "passing logits: BCELoss needs probabilities; use bce-logits (more stable as well)",
            "predictions of exactly 0 or 1: the log is clamped at -100",
        ),
    ),
)

SPECS = (BCE,)
