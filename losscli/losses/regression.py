"""MSELoss and L1Loss: element-wise distances between predictions and targets."""

from __future__ import annotations

from typing import TYPE_CHECKING

from losscli.registry import FLOAT, Explain, InputSpec, LossSpec
from losscli.steps import Steps

if TYPE_CHECKING:
    from losscli.validate import Context, Prepared

SAME_SHAPE = "it accepts predictions and targets of the same shape"


def prepare_same_shape(inputs, options, ctx: Context) -> Prepared:
    """Predictions and targets, both finite, of one shape ((N,1) and (N,) count as one)."""
    from losscli.validate import Prepared, check_finite, same_shape

    preds, targets = inputs["predictions"], inputs["targets"]
    check_finite("predictions", preds, ctx)
    check_finite("targets", targets, ctx)
    target_array = same_shape(("predictions", preds), ("targets", targets), SAME_SHAPE, ctx)
    return Prepared({"predictions": preds.array, "targets": target_array}, dict(options))


def element_rows(arrays, limit):
    """The first ``limit`` elements of predictions and targets, flattened, as float64."""
    import numpy as np

    preds = np.asarray(arrays["predictions"], dtype=np.float64).reshape(-1)[:limit]
    targets = np.asarray(arrays["targets"], dtype=np.float64).reshape(-1)[:limit]
    return preds, targets


def _steps_mse(arrays, options, limit) -> Steps:
    preds, targets = element_rows(arrays, limit)
    steps = Steps(["element", "prediction", "target", "difference", "squared"])
    for i, (p, y) in enumerate(zip(preds, targets)):
        steps.rows.append([i + 1, p, y, p - y, (p - y) ** 2])
    return steps


def _steps_l1(arrays, options, limit) -> Steps:
    preds, targets = element_rows(arrays, limit)
    steps = Steps(["element", "prediction", "target", "difference", "absolute"])
    for i, (p, y) in enumerate(zip(preds, targets)):
        steps.rows.append([i + 1, p, y, p - y, abs(p - y)])
    return steps


PAIR = (
    InputSpec("predictions", FLOAT, "any shape (N,*)"),
    InputSpec("targets", FLOAT, "the predictions' shape"),
)

MSE = LossSpec(
    name="mse",
    torch_class="MSELoss",
    task="regression",
    summary="mean squared error between predictions and targets",
    inputs=PAIR,
    prepare=prepare_same_shape,
    steps=_steps_mse,
    example="losscli mse sample_data/y_pred.csv sample_data/y_true.csv",
    explain=Explain(
        formula="loss_j = (x_j - y_j)^2 for every element j; mean = sum_j loss_j / numel",
        steps=(
            "subtract the target from the prediction, element by element",
            "square the difference",
            "reduce: mean divides by the number of elements (not rows)",
            "gradient w.r.t. the predictions: 2 (x - y) / numel",
        ),
        mistakes=(
            "targets of shape (N,) against predictions (N,1): torch would broadcast to (N,N); "
            "losscli treats them as one shape and warns",
            "comparing with RMSE: MSELoss does not take the square root",
        ),
    ),
)

L1 = LossSpec(
    name="l1",
    aliases=("mae",),
    torch_class="L1Loss",
    task="regression",
    summary="mean absolute error between predictions and targets",
    inputs=PAIR,
    prepare=prepare_same_shape,
    steps=_steps_l1,
    example="losscli l1 sample_data/y_pred.csv sample_data/y_true.csv",
    explain=Explain(
        formula="loss_j = |x_j - y_j| for every element j; mean = sum_j loss_j / numel",
        steps=(
            "subtract the target from the prediction, element by element",
            "take the absolute value",
            "reduce: mean divides by the number of elements",
            "gradient w.r.t. the predictions: sign(x - y) / numel (0 where x = y)",
        ),
        mistakes=(
            "expecting the gradient to shrink near the target: it is constant in size; "
            "see huber or smooth-l1",
        ),
    ),
)

SPECS = (MSE, L1)
