"""Sigmoid focal loss (Lin et al., 2017) as torchvision.ops.sigmoid_focal_loss computes it.

torch has it only as a function (in torchvision), so the spec carries its own forward.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from losscli.registry import FLOAT, NUMBER, Explain, InputSpec, LossSpec, OptionSpec
from losscli.steps import Steps, element_rows

if TYPE_CHECKING:
    from losscli.validate import Context, Prepared

ORDER = 35  # after the binary losses in `list` and the help


def _forward(torch, options):
    """The unreduced focal loss of logits x against targets y in [0, 1]."""
    alpha, gamma = options["alpha"], options["gamma"]
    functional = torch.nn.functional

    def focal(x, y):
        p = torch.sigmoid(x)
        cross_entropy = functional.binary_cross_entropy_with_logits(x, y, reduction="none")
        p_t = p * y + (1 - p) * (1 - y)
        loss = cross_entropy * (1 - p_t) ** gamma
        if alpha >= 0:
            loss = (alpha * y + (1 - alpha) * (1 - y)) * loss
        return loss

    return focal


def _prepare(inputs, options, ctx: Context) -> Prepared:
    from losscli.validate import Prepared, probability_targets

    targets = probability_targets(inputs, ctx, "focal")
    return Prepared(
        {"predictions": inputs["predictions"].array, "targets": targets},
        {"alpha": float(options["alpha"]), "gamma": float(options["gamma"])},
    )


def _steps(arrays, options, limit) -> Steps:
    import numpy as np

    preds, targets = element_rows(arrays, limit)
    alpha, gamma = options["alpha"], options["gamma"]
    steps = Steps(["element", "logit x", "sigmoid p", "y", "p_t", "ce", "loss"])
    for i, (x, y) in enumerate(zip(preds, targets)):
        p = 1 / (1 + np.exp(-x))
        ce = np.logaddexp(0.0, -x) * y + np.logaddexp(0.0, x) * (1 - y)
        p_t = p * y + (1 - p) * (1 - y)
        loss = ce * (1 - p_t) ** gamma
        if alpha >= 0:
            loss *= alpha * y + (1 - alpha) * (1 - y)
        steps.rows.append([i + 1, x, p, y, p_t, ce, loss])
    steps.notes.append("loss = alpha_t (1 - p_t)^gamma ce; alpha_t = alpha y + (1 - alpha)(1 - y)")
    return steps


FOCAL = LossSpec(
    name="focal",
    torch_class="sigmoid_focal_loss",
    source="torchvision.ops.sigmoid_focal_loss",
    forward=_forward,
    predictions_are="logits",
    task="binary / multi-label classification with rare positives (detection)",
    summary="binary cross-entropy of logits scaled down where the prediction is already right",
    inputs=(
        InputSpec("predictions", FLOAT, "logits (raw scores), any shape"),
        InputSpec("targets", FLOAT, "values in [0,1], the predictions' shape"),
    ),
    options=(
        OptionSpec(
            "alpha",
            0.25,
            NUMBER,
            "Weight of the positives (1 - alpha for the negatives); negative: no weighting.",
            low=-1.0,
            high=1.0,
        ),
        OptionSpec("gamma", 2.0, NUMBER, "Focusing exponent: 0 gives plain bce-logits.", low=0.0),
    ),
    prepare=_prepare,
    steps_table=_steps,
    example="losscli focal sample_data/bce_logits.csv sample_data/bce_targets.csv --gamma 2",
    explain=Explain(
        formula=(
            "p_j = sigmoid(x_j);  p_t = p_j y_j + (1 - p_j)(1 - y_j)\n"
            "loss_j = -alpha_t (1 - p_t)^gamma log(p_t)   (alpha_t = alpha y + (1-alpha)(1-y))\n"
            "mean = sum_j loss_j / numel"
        ),
        procedure=(
            "squash each logit with the sigmoid: p = 1 / (1 + exp(-x))",
            "p_t is the probability given to the right answer: p for y = 1, 1 - p for y = 0",
            "binary cross-entropy of the logit, -log(p_t), computed stably from x",
            "multiply by (1 - p_t)^gamma: easy, confident rows count little",
            "multiply by alpha for positives and 1 - alpha for negatives (unless alpha < 0)",
            "reduce: mean divides by the number of elements",
        ),
        mistakes=(
            "passing probabilities: the focal loss applies the sigmoid itself",
            "gamma 0 and a negative alpha give bce-logits exactly; a check worth running",
        ),
    ),
)

SPECS = (FOCAL,)
