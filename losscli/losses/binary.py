"""Binary and multi-label losses: BCE, BCE with logits, soft margin, multi-label soft margin."""

from __future__ import annotations

from typing import TYPE_CHECKING

from losscli.kernels import row_pieces
from losscli.registry import (
    FLOAT,
    LABEL,
    VECTOR,
    WEIGHT,
    Explain,
    InputSpec,
    LossSpec,
    OptionSpec,
    shared_prepare,
)
from losscli.steps import Steps, element_rows, element_weights

ORDER = 30  # where its losses stand in `list` and the help

if TYPE_CHECKING:
    from losscli.validate import Context, Prepared


def _prepare_bce(inputs, options, ctx: Context) -> Prepared:
    from losscli.validate import Prepared, element_weight, in_unit_interval, probability_targets

    preds = inputs["predictions"]
    target_array = probability_targets(inputs, ctx, "bce")
    in_unit_interval(
        "prediction", preds, "bce needs probabilities; for logits use bce-logits (or --from logits)"
    )
    p = preds.array
    ctx.gather(
        "bce exact",
        (int(((p == 0) | (p == 1)).sum()),),
        lambda fact: (
            fact[0]
            and f"{fact[0]} bce prediction(s) are exactly 0 or 1: torch clamps log(p) and log(1-p) "
            "at -100, so such a loss is capped at 100 per element"
        ),
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
    weight = element_weights(arrays, options, limit)
    if weight is not None:
        steps.columns += ["weight", "loss"]
    for i, (p, y) in enumerate(zip(preds, targets)):
        loss = -(y * log_p[i] + (1 - y) * log_q[i])
        row = [i + 1, p, y, loss]
        steps.rows.append(row if weight is None else row + [weight[i], weight[i] * loss])
    return steps


def _fused_bce(torch, tensors, options, wanted, scale=1.0):
    """BCELoss's unreduced loss and the gradients of ``scale`` times its sum, without
    autograd: torch's own loss and backward ops for the predictions (logs clamped at -100;
    d/dp = w (p - y) / max(p (1 - p), 1e-12)), and d/dy = w (log(1-p) - log p) for the
    targets, with the logs not clamped there (infinite at p = 0 or 1, as torch's)."""
    p, y = tensors["predictions"], tensors["targets"]
    weight = options.get("weight")
    if weight is not None and weight.shape != p.shape:
        weight = weight.expand_as(p)
    elements = torch.nn.functional.binary_cross_entropy(p, y, weight, reduction="none")
    grads = {}
    if "predictions" in wanted:
        every = torch.full((), scale, dtype=p.dtype, device=p.device).expand_as(p)
        grads["predictions"] = torch.ops.aten.binary_cross_entropy_backward(every, p, y, weight, 0)
    if "targets" in wanted:  # unclamped, as torch's: infinite where p is 0 or 1
        grad = (-p).log1p() - p.log()
        factor = scale if weight is None else weight * scale
        grads["targets"] = grad if scale == 1.0 and weight is None else grad * factor
    return elements, grads


def _fused_bce_logits(torch, tensors, options, wanted, scale=1.0):
    """BCEWithLogitsLoss's unreduced loss and the gradients of ``scale`` times its sum, piece
    by piece (losscli.kernels). With e = exp(-|x|), -log s(x) = max(-x, 0) + log1p(e) and
    -log s(-x) = max(x, 0) + log1p(e) (stable for any logit): loss = w (pw y (-log s(x)) +
    (1 - y) (-log s(-x))); d/dx = w (s(x) (1 - y + pw y) - pw y), with s(x) = 1 / (1 + exp(-x));
    d/dy = w (pw (-log s(x)) - (-log s(-x)))."""
    x, y = tensors["predictions"], tensors["targets"]
    weight, pos_weight = options.get("weight"), options.get("pos_weight")
    elements = torch.empty_like(x)
    grads = {n: torch.empty_like(tensors[n]) for n in ("predictions", "targets") if n in wanted}
    rows_of_weight = (
        weight is not None
        and x.dim() > 0
        and weight.dim() == x.dim()
        and weight.shape[0] == x.shape[0]
        and x.shape[0] != 1
    )
    if x.dim() == 0:
        _bce_logits_piece(torch, x, y, weight, pos_weight, scale, elements, grads)
        return elements, grads
    for rows in row_pieces(x):
        w = weight if weight is None or not rows_of_weight else weight[rows]
        _bce_logits_piece(
            torch, x[rows], y[rows], w, pos_weight, scale, elements[rows],
            {n: g[rows] for n, g in grads.items()},
        )  # fmt: skip
    return elements, grads


def _sigmoid(torch, x, out):
    """s(x) = 1 / (1 + exp(-x)) into ``out``: accurate to a few ulps for every x (1 + exp(-x)
    is at least 1; where exp(-x) overflows, s is below the smallest normal number and 0),
    and computed alike for every element (torch.sigmoid is not: see _bce_logits_piece)."""
    return torch.neg(x, out=out).exp_().add_(1).reciprocal_()


def _bce_logits_piece(torch, x, y, weight, pos_weight, scale, elements, grads) -> None:
    if weight is None and pos_weight is None:  # max(x, 0) + log1p(e) - x y, and s(x) - y
        # Not torch's softplus and sigmoid: their vectorised loops compute the elements that
        # end a piece another way than the others (an ulp apart), and a value must not
        # depend on --block-rows. exp, log1p, max and division compute every element alike.
        e = torch.abs(x).neg_().exp_()
        torch.log1p(e, out=elements).add_(torch.clamp_min(x, 0)).addcmul_(x, y, value=-1)
        if "predictions" in grads:
            grad = _sigmoid(torch, x, grads["predictions"]).sub_(y)
            if scale != 1.0:
                grad.mul_(scale)
        if "targets" in grads:  # -log s(x) + log s(-x) = -x
            torch.mul(x, -scale, out=grads["targets"])
        return
    e = torch.abs(x, out=elements).neg_().exp_()
    softplus = e.log1p()
    not_positive = torch.clamp_min(-x, 0).add_(softplus)  # -log s(x)
    not_negative = torch.clamp_min(x, 0).add_(softplus)  # -log s(-x)
    positive = y if pos_weight is None else pos_weight * y
    negative = 1 - y
    if "predictions" in grads:
        sigmoid = _sigmoid(torch, x, torch.empty_like(x))
        grad = grads["predictions"]
        torch.mul(sigmoid, negative + positive, out=grad).sub_(positive)
        if weight is not None:
            grad.mul_(weight)
        if scale != 1.0:
            grad.mul_(scale)
    if "targets" in grads:
        grad = grads["targets"]
        scaled = not_positive if pos_weight is None else pos_weight * not_positive
        torch.sub(scaled, not_negative, out=grad)
        if weight is not None:
            grad.mul_(weight)
        if scale != 1.0:
            grad.mul_(scale)
    torch.mul(positive, not_positive, out=elements).addcmul_(negative, not_negative)
    if weight is not None:
        elements.mul_(weight)


BCE = LossSpec(
    name="bce",
    torch_class="BCELoss",
    fused=_fused_bce,
    predictions_are="probs",
    task="binary / multi-label classification",
    summary="binary cross-entropy of probabilities against targets in [0,1]",
    inputs=(
        InputSpec("predictions", FLOAT, "probabilities in [0,1] (sigmoid output), any shape"),
        InputSpec("targets", FLOAT, "values in [0,1], the predictions' shape"),
    ),
    options=(WEIGHT,),
    prepare=_prepare_bce,
    steps_table=_steps_bce,
    example="losscli bce sample_data/bce_probs.csv sample_data/bce_targets.csv",
    explain=Explain(
        formula=(
            "loss_j = -w_j * (y_j log p_j + (1 - y_j) log(1 - p_j)), logs clamped at -100\n"
            "mean = sum_j loss_j / numel"
        ),
        procedure=(
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


def _log_sigmoid(x):
    import numpy as np

    return -np.logaddexp(0.0, -x)


def _prepare_bce_logits(inputs, options, ctx: Context) -> Prepared:
    from losscli.validate import Prepared, element_weight, probability_targets

    preds = inputs["predictions"]
    target_array = probability_targets(inputs, ctx, "bce-logits")
    logits = preds.array
    inside = preds.within(0, 1)
    ctx.gather(  # (blocks inside [0,1], blocks, elements): said when every block is
        "bce-logits unit",
        (int(inside), 1, logits.size),
        lambda fact: (
            fact[0] == fact[1]
            and fact[2] > 1
            and "bce-logits predictions all lie in [0,1], so they look like probabilities; "
            "BCEWithLogitsLoss applies the sigmoid itself: pass logits, say --from probs, "
            "or use bce"
        ),
    )
    weight, per_row = element_weight("--weight", options["weight"], logits.shape)
    pos_weight, pos_per_row = element_weight(
        "--pos-weight", options["pos_weight"], logits.shape[-1:]
    )
    prepared = Prepared(
        {"predictions": logits, "targets": target_array},
        {"weight": weight, "pos_weight": pos_weight},
    )
    if per_row:
        prepared.row_options.add("weight")
    if pos_per_row and logits.ndim == 1:
        prepared.row_options.add("pos_weight")
    return prepared


def _steps_bce_logits(arrays, options, limit) -> Steps:
    import numpy as np

    preds, targets = element_rows(arrays, limit)
    columns = arrays["predictions"].shape[-1] if arrays["predictions"].ndim else 1
    pos_weight = options["pos_weight"]
    weight = element_weights(arrays, options, limit)
    steps = Steps(["element", "logit x", "sigmoid p", "y"])
    steps.columns += ["pos_weight"] if pos_weight is not None else []
    steps.columns += ["weight"] if weight is not None else []
    steps.columns.append("loss")
    for i, (x, y) in enumerate(zip(preds, targets)):
        row = [i + 1, x, 1 / (1 + np.exp(-x)), y]
        pw = 1.0
        if pos_weight is not None:
            pw = np.broadcast_to(pos_weight, (columns,))[i % columns]
            row.append(pw)
        loss = -(pw * y * _log_sigmoid(x) + (1 - y) * _log_sigmoid(-x))
        if weight is not None:
            row.append(weight[i])
            loss *= weight[i]
        steps.rows.append(row + [loss])
    steps.notes.append(
        "loss = -weight (pos_weight y log sigmoid(x) + (1-y) log(1 - sigmoid(x))), computed stably"
    )
    return steps


def _steps_soft_margin(arrays, options, limit) -> Steps:
    import numpy as np

    preds, targets = element_rows(arrays, limit)
    steps = Steps(["element", "x", "y", "-y x", "log(1 + exp(-y x))"])
    for i, (x, y) in enumerate(zip(preds, targets)):
        steps.rows.append([i + 1, x, y, -y * x, np.logaddexp(0.0, -y * x)])
    return steps


def _prepare_multilabel_soft_margin(inputs, options, ctx: Context) -> Prepared:
    from losscli.validate import (
        Prepared,
        check_finite,
        in_unit_interval,
        require_2d,
        same_shape,
        vector_length,
    )

    preds, targets = inputs["predictions"], inputs["targets"]
    check_finite("predictions", preds, ctx)
    check_finite("targets", targets, ctx)
    require_2d("predictions", preds, "multilabel-soft-margin needs (N,C) logits")
    labels = same_shape(
        ("predictions", preds), ("targets", targets), "it accepts (N,C) and (N,C)", ctx
    )
    in_unit_interval(
        "target", targets.with_array(labels), "multilabel-soft-margin targets are 0/1 per class"
    )
    weight = options["weight"]
    vector_length("--weight", weight, preds.array.shape[1], "classes")
    return Prepared({"predictions": preds.array, "targets": labels}, {"weight": weight})


def _steps_multilabel_soft_margin(arrays, options, limit) -> Steps:
    import numpy as np

    x = np.asarray(arrays["predictions"][:limit], dtype=np.float64)
    y = np.asarray(arrays["targets"][:limit], dtype=np.float64)
    w = options["weight"] if options["weight"] is not None else np.ones(x.shape[1])
    steps = Steps(["row", "logits", "targets", "per-class loss", "loss = mean over classes"])
    per_class = -w * (y * _log_sigmoid(x) + (1 - y) * _log_sigmoid(-x))
    for i in range(len(x)):
        steps.rows.append([i + 1, x[i], y[i], per_class[i], per_class[i].mean()])
    return steps


BCE_LOGITS = LossSpec(
    name="bce-logits",
    torch_class="BCEWithLogitsLoss",
    fused=_fused_bce_logits,
    predictions_are="logits",
    task="binary / multi-label classification",
    summary="binary cross-entropy of logits (sigmoid built in, numerically stable)",
    inputs=(
        InputSpec("predictions", FLOAT, "logits (raw scores), any shape"),
        InputSpec("targets", FLOAT, "values in [0,1], the predictions' shape"),
    ),
    options=(
        WEIGHT,
        OptionSpec(
            "pos_weight",
            None,
            VECTOR,
            "Weight of positive examples, one per class (column).",
            low=0.0,
        ),
    ),
    prepare=_prepare_bce_logits,
    steps_table=_steps_bce_logits,
    example="losscli bce-logits sample_data/bce_logits.csv sample_data/bce_targets.csv",
    explain=Explain(
        formula=(
            "loss_j = -w_j (pw_c y_j log sigmoid(x_j) + (1 - y_j) log(1 - sigmoid(x_j)))\n"
            "mean = sum_j loss_j / numel   (pw_c: --pos-weight of the element's column)"
        ),
        procedure=(
            "squash each logit with the sigmoid: p = 1 / (1 + exp(-x))",
            "binary cross-entropy of p against y, with positives weighted by --pos-weight",
            "computed from the logit directly (log-sum-exp), so it never takes log(0)",
            "reduce: mean divides by the number of elements",
            "gradient w.r.t. the logits (no weights): (sigmoid(x) - y) / numel",
        ),
        mistakes=(
            "passing probabilities: BCEWithLogitsLoss applies the sigmoid itself",
            "--pos-weight has one entry per column (class), not per row",
        ),
    ),
)

SOFT_MARGIN = LossSpec(
    name="soft-margin",
    torch_class="SoftMarginLoss",
    task="binary classification (+1/-1 labels)",
    summary="logistic loss log(1 + exp(-y x)) for +1/-1 targets",
    inputs=(
        InputSpec("predictions", FLOAT, "scores, any shape"),
        InputSpec("targets", LABEL, "+1 or -1, the predictions' shape"),
    ),
    prepare=shared_prepare("prepare_sign_targets"),
    steps_table=_steps_soft_margin,
    example="losscli soft-margin sample_data/scores.csv sample_data/signs.csv",
    explain=Explain(
        formula="loss_j = log(1 + exp(-y_j x_j)); mean = sum_j loss_j / numel",
        procedure=(
            "multiply each score by its +1/-1 label: the margin y x",
            "loss = log(1 + exp(-y x)): near 0 for large positive margins",
            "reduce: mean divides by the number of elements",
        ),
        mistakes=("0/1 labels: SoftMarginLoss needs +1/-1 (use bce-logits for 0/1)",),
    ),
)

MULTILABEL_SOFT_MARGIN = LossSpec(
    name="multilabel-soft-margin",
    torch_class="MultiLabelSoftMarginLoss",
    task="multi-label classification",
    summary="per-class logistic loss averaged over classes, for 0/1 multi-label targets",
    inputs=(
        InputSpec("predictions", FLOAT, "logits (N,C)"),
        InputSpec("targets", LABEL, "(N,C) of 0/1 (values in [0,1] accepted)"),
    ),
    options=(WEIGHT,),
    prepare=_prepare_multilabel_soft_margin,
    steps_table=_steps_multilabel_soft_margin,
    example="losscli multilabel-soft-margin sample_data/bce_logits.csv sample_data/bce_targets.csv",
    explain=Explain(
        formula=(
            "loss_i = -1/C sum_c w_c (y_ic log sigmoid(x_ic) + (1 - y_ic) log sigmoid(-x_ic))\n"
            "mean = sum_i loss_i / N"
        ),
        procedure=(
            "binary cross-entropy with logits for every class of a sample",
            "times --weight per class, then averaged over the C classes",
            "reduce: mean divides by the number of samples N",
        ),
        mistakes=(
            "it equals bce-logits with reduction mean only when there are no weights",
            "class-index targets: multi-label targets are (N,C) 0/1 rows",
        ),
    ),
)

SPECS = (BCE, BCE_LOGITS, SOFT_MARGIN, MULTILABEL_SOFT_MARGIN)
