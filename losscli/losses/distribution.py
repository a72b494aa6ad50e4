"""KLDivLoss: Kullback-Leibler divergence between distributions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from losscli.registry import FLAG, FLOAT, REDUCTIONS, Explain, InputSpec, LossSpec, OptionSpec
from losscli.steps import Steps, element_rows

ORDER = 40  # where its losses stand in `list` and the help

if TYPE_CHECKING:
    from losscli.validate import Context, Prepared


def _class_axis(array) -> int:
    return 1 if array.ndim >= 2 else 0


def _prepare_kl(inputs, options, ctx: Context) -> Prepared:
    from losscli.validate import (
        SAME_SHAPE,
        Prepared,
        at_least,
        check_finite,
        same_shape,
        warn_unless_log_probabilities,
    )

    preds = inputs["predictions"]
    log_target = options["log_target"]
    check_finite("predictions", preds, ctx)
    check_finite("targets", inputs["targets"], ctx)
    targets = inputs["targets"].with_array(
        same_shape(("predictions", preds), ("targets", inputs["targets"]), SAME_SHAPE, ctx)
    )
    if not log_target:
        at_least(
            "target",
            targets,
            0.0,
            "kl-div targets are probabilities (pass --log-target for log-probabilities)",
        )
    # A 1-D input is one distribution: its rows add up only when the block is all of it.
    whole = preds.array.ndim != 1 or preds.shape[0] == len(preds.array)
    warn_unless_log_probabilities(
        ctx,
        preds.array,
        _class_axis(preds.array),
        "kl-div predictions are not log-probabilities ({reason}); KLDivLoss expects "
        "log_softmax output as its input (say --from probs or --from logits to convert)",
        whole,
    )
    if log_target:
        warn_unless_log_probabilities(
            ctx,
            targets.array,
            _class_axis(targets.array),
            "--log-target is set, but the targets are not log-probabilities",
            whole,
            predictions=False,
        )
    if ctx.reduction == "mean":
        ctx.warn(
            "kl-div with --reduction mean divides by every element, not by the batch size; "
            "--reduction batchmean gives the mathematical KL divergence"
        )
    return Prepared(
        {"predictions": preds.array, "targets": targets.array}, {"log_target": log_target}
    )


def _kl_denominator(arrays, options, reduction, count):
    """batchmean divides by the batch size, mean by every element."""
    preds = arrays["predictions"]
    if reduction == "batchmean":
        return preds.shape[0] if preds.ndim else 1
    return count


def kl_elements(x, t, log_target: bool):
    """KLDivLoss per element, in NumPy: t (log t - x), 0 where t = 0."""
    import numpy as np

    if log_target:
        return np.exp(t) * (t - x)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(t > 0, t * (np.log(np.where(t > 0, t, 1.0)) - x), 0.0)


def _steps_kl(arrays, options, limit) -> Steps:
    x, t = element_rows(arrays, limit)
    log_target = options["log_target"]
    target_label = "log t" if log_target else "t"
    steps = Steps(["element", "input x (log q)", target_label, "t (log t - x)"])
    for i, value in enumerate(kl_elements(x, t, log_target)):
        steps.rows.append([i + 1, x[i], t[i], value])
    steps.notes.append("elements with t = 0 contribute 0")
    return steps


KL_DIV = LossSpec(
    name="kl-div",
    aliases=("kl",),
    torch_class="KLDivLoss",
    predictions_are="log-probs",
    class_rows=True,
    task="distribution matching (distillation, VAEs)",
    summary="Kullback-Leibler divergence of the target distribution from the predicted one",
    inputs=(
        InputSpec("predictions", FLOAT, "log-probabilities (log_softmax output), any shape"),
        InputSpec(
            "targets", FLOAT, "probabilities (log-probabilities with --log-target), same shape"
        ),
    ),
    options=(OptionSpec("log_target", False, FLAG, "Targets are log-probabilities."),),
    reductions=(*REDUCTIONS, "batchmean"),
    prepare=_prepare_kl,
    mean_denominator=_kl_denominator,
    steps_table=_steps_kl,
    example="losscli kl-div sample_data/log_probs.csv sample_data/target_probs.csv -r batchmean",
    explain=Explain(
        formula=(
            "loss_j = t_j (log t_j - x_j)   (x = log q, the predicted log-probabilities)\n"
            "batchmean = sum_j loss_j / N  (the KL divergence per sample); mean = sum / numel"
        ),
        procedure=(
            "take each target probability t and predicted log-probability x",
            "t (log t - x) is that element's share of KL(t || q); t = 0 contributes 0",
            "reduce: batchmean divides by the batch size N, which gives KL per sample",
        ),
        mistakes=(
            "passing probabilities as the input: KLDivLoss expects log-probabilities",
            "reduction mean divides by every element: use batchmean for the real KL",
            "swapping the arguments: the input is the model's log q, the target is p",
        ),
    ),
)

SPECS = (KL_DIV,)
