"""CrossEntropyLoss and NLLLoss: multi-class losses over logits and log-probabilities."""

from __future__ import annotations

from typing import TYPE_CHECKING

from losscli.errors import InputError, OptionError
from losscli.kernels import row_pieces
from losscli.registry import (
    FLOAT,
    IGNORE_INDEX,
    INDEX,
    NUMBER,
    WEIGHT,
    Explain,
    InputSpec,
    LossSpec,
    OptionSpec,
)
from losscli.steps import Steps, first_rows

ORDER = 10  # where its losses stand in `list` and the help

if TYPE_CHECKING:
    from losscli.validate import Context, Prepared

CLASS_SHAPES = "it accepts predictions (N,C) or (N,C,d1,...) with targets (N) or (N,d1,...)"


def _class_targets(name, preds, targets, weight, ignore_index, ctx: Context):
    """Check predictions are (N,C,...) and return targets as int64 indices of shape (N,...)."""
    from losscli.validate import class_indices, shape_error, vector_length

    if preds.array.ndim < 2:
        raise InputError(
            f"predictions ({preds.source}) have shape {preds.shape}; {name} needs "
            "one score per class: (N,C) or (N,C,d1,...)"
        )
    shape = preds.array.shape
    num_classes = shape[1]
    vector_length("--weight", weight, num_classes, "classes")
    expected = (shape[0],) + shape[2:]
    target_shape = targets.array.shape
    if target_shape != expected:
        if len(shape) == 2 and target_shape == (shape[0], 1):
            ctx.warn(f"targets shape {targets.shape} treated as {targets.shape[:1]}")
            targets = targets.with_array(targets.array.reshape(expected))
        else:
            raise shape_error(("predictions", preds), ("targets", targets), CLASS_SHAPES)
    named = targets.array.dtype.kind in "OUS"
    indices = class_indices(
        "target", targets, num_classes, ctx, ignore_index, class_names=preds.header
    )
    extremes = targets.extremes() if not named and ignore_index is not None else None
    if extremes is not None and not extremes[0] <= ignore_index <= extremes[1]:
        ignored = 0  # the min and max say no target is the ignore index
    else:
        ignored = int((indices == ignore_index).sum())
    ctx.gather(
        "all ignored",
        (ignored, indices.size),
        lambda fact: (
            fact[0] == fact[1]
            and f"every target ({fact[0]} of {fact[1]}) equals the ignore index {ignore_index}: "
            "the mean loss is NaN"
        ),
    )
    kind = "class names, mapped to indices" if named else "class indices"
    return indices, kind


def _prepare_ce(inputs, options, ctx: Context) -> Prepared:
    import numpy as np

    from losscli.validate import (
        Prepared,
        at_least,
        check_finite,
        check_representable,
        vector_length,
    )

    preds, targets = inputs["predictions"], inputs["targets"]
    weight, ignore_index = options["weight"], options["ignore_index"]
    check_finite("predictions", preds, ctx)
    logits = preds.array
    numeric = targets.array.dtype.kind in "biuf"
    if logits.ndim >= 2 and numeric and targets.array.shape == logits.shape:
        # Targets shaped like the predictions are class probabilities (one-hot integers too).
        if ignore_index != -100:
            raise OptionError(
                f"--ignore-index {ignore_index} cannot apply to class-probability targets "
                f"({targets.source}, shape {targets.shape}): torch ignores only "
                "class indices; drop --ignore-index, or give class indices"
            )
        targets = targets.with_array(targets.array.astype(np.float64, copy=False))
        check_finite("targets", targets, ctx)
        check_representable("targets", targets, ctx)
        at_least(
            "target",
            targets,
            0.0,
            "targets shaped like the predictions are class probabilities (-1 padded class "
            "indices are for multilabel-margin)",
        )
        vector_length("--weight", weight, logits.shape[1], "classes")
        sums = targets.array.sum(axis=1)
        if not np.allclose(sums, 1.0, atol=1e-4):
            row = tuple(np.argwhere(~np.isclose(sums, 1.0, atol=1e-4))[0])
            first = f"first at row {row[0] + targets.row_offset + 1} (sum {sums[row]:.6g})"
            ctx.gather(
                "targets sum",
                (first,),
                lambda fact: (
                    f"class-probability targets ({targets.source}) have rows that do "
                    f"not sum to 1, {fact[0]}"
                ),
                first_wins=1,
            )
        arrays = {"predictions": logits, "targets": targets.array}
        kind = "class probabilities"
    else:
        check_finite("targets", targets, ctx)
        indices, kind = _class_targets("ce", preds, targets, weight, ignore_index, ctx)
        arrays = {"predictions": logits, "targets": indices}
    if logits.ndim >= 2 and logits.size:
        ctx.gather(  # (blocks that look like probabilities, blocks): said when every block does
            "ce probabilities",
            (int(_looks_like_probabilities(preds)), 1),
            lambda fact: (
                fact[0] == fact[1]
                and "ce predictions look like probabilities (rows in [0,1] summing to 1); "
                "CrossEntropyLoss applies log-softmax itself: pass logits, or say --from probs "
                "(or use nll on log-probabilities)"
            ),
        )
    return Prepared(arrays, dict(options), kind)


def _looks_like_probabilities(preds) -> bool:
    """Rows in [0,1] that sum to 1, within what rounding to the decimals written can explain
    (probabilities rounded to 2 decimals sum to 1 only within C * 0.005)."""
    import numpy as np

    from losscli.validate import sum_tolerance

    scores = preds.array
    if scores.dtype.kind != "f" or not preds.within(0, 1):
        return False
    tolerance = sum_tolerance(scores)
    return bool(np.allclose(scores.sum(axis=1), 1.0, rtol=0, atol=tolerance))


def _prepare_nll(inputs, options, ctx: Context) -> Prepared:
    from losscli.validate import Prepared, check_finite, warn_unless_log_probabilities

    preds, targets = inputs["predictions"], inputs["targets"]
    weight, ignore_index = options["weight"], options["ignore_index"]
    check_finite("predictions", preds, ctx)
    check_finite("targets", targets, ctx)
    indices, kind = _class_targets("nll", preds, targets, weight, ignore_index, ctx)
    logp = preds.array
    warn_unless_log_probabilities(
        ctx,
        logp,
        1,
        "nll predictions are not log-probabilities ({reason}); pass log_softmax output, "
        "say --from logits or --from probs, or use ce on logits",
    )
    return Prepared({"predictions": logp, "targets": indices}, dict(options), kind)


def _class_denominator(arrays, options, reduction, count):
    """Mean over class-index targets divides by the total weight of the non-ignored ones."""
    targets = arrays["targets"]
    if targets.dtype.kind == "f":  # class probabilities: the number of samples
        return count
    kept = targets[targets != options["ignore_index"]]
    weight = options["weight"]
    # Each kept target's weight, summed in a fixed order by the engine (losscli.sums).
    return weight[kept].reshape(-1) if weight is not None else float(kept.size)


def _softmax_at(row, target: int) -> float:
    """softmax(row)[target], shifted by the row's max so that exp cannot overflow."""
    import numpy as np

    shifted = row - row.max()
    return float(np.exp(shifted[target]) / np.exp(shifted).sum())


def _exp_at(row, target: int) -> float:
    """exp(row[target]): the probability a row of log-probabilities gives the target."""
    import numpy as np

    return float(np.exp(row[target]))


def _log_softmax(logits):
    import numpy as np

    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _target_rows(targets, limit):
    import numpy as np

    if targets.ndim > 1 and targets.dtype.kind != "f":
        return np.asarray(targets[:limit]).reshape(-1)
    return first_rows(targets, limit) if targets.dtype.kind == "f" else targets[:limit]


def _steps_ce(arrays, options, limit) -> Steps:
    import numpy as np

    logits = first_rows(arrays["predictions"], limit)[:limit]
    targets = _target_rows(arrays["targets"], limit)[:limit]
    logp = _log_softmax(logits)
    probs = np.exp(logp)
    weight, eps = options["weight"], options["label_smoothing"]
    num_classes = logits.shape[1]
    w = weight if weight is not None else np.ones(num_classes)
    if targets.dtype.kind == "f":
        steps = Steps(["row", "logits", "softmax p", "target y", "loss = -sum(w*y*log p)"])
        for i in range(len(logits)):
            y = targets[i] * (1 - eps) + eps / num_classes
            steps.rows.append([i + 1, logits[i], probs[i], targets[i], -(w * y * logp[i]).sum()])
        if eps:
            steps.notes.append(f"label smoothing {eps}: y <- (1-{eps})*y + {eps}/C")
        return steps
    columns = ["row", "logits", "softmax p", "target", "p[target]", "-log p[target]"]
    if weight is not None:
        columns.append("w[target]")
    if eps:
        columns.append("smoothing term")
    steps = Steps(columns + ["loss"])
    for i, (row, t) in enumerate(zip(logp, targets)):
        if t == options["ignore_index"]:
            steps.rows.append([i + 1, logits[i], probs[i], int(t), "ignored", "", 0.0])
            continue
        nll = -row[t]
        cells = [i + 1, logits[i], probs[i], int(t), probs[i][t], nll]
        loss = (1 - eps) * w[t] * nll
        if weight is not None:
            cells.append(w[t])
        if eps:
            smooth = eps / num_classes * -(w * row).sum()
            cells.append(smooth)
            loss += smooth
        steps.rows.append(cells + [loss])
    if eps:
        steps.notes.append(
            f"label smoothing {eps}: loss = (1-{eps})*w[t]*(-log p[t])"
            f" + {eps}/C * sum_c w[c]*(-log p[c])"
        )
    return steps


def _steps_nll(arrays, options, limit) -> Steps:
    logp = first_rows(arrays["predictions"], limit)[:limit]
    targets = _target_rows(arrays["targets"], limit)[:limit]
    weight = options["weight"]
    steps = Steps(["row", "log p", "target", "log p[target]", "negated", "weight", "loss"])
    for i, (row, t) in enumerate(zip(logp, targets)):
        if t == options["ignore_index"]:
            steps.rows.append([i + 1, row, int(t), "ignored", "", "", 0.0])
            continue
        w = weight[t] if weight is not None else 1.0
        steps.rows.append([i + 1, row, int(t), row[t], -row[t], w, -w * row[t]])
    return steps


def _fused_ce(torch, tensors, options, wanted, scale=1.0):
    """CrossEntropyLoss's unreduced loss and the gradient of ``scale`` times its sum w.r.t.
    the logits, without autograd: log-sum-exp, then softmax minus the target (one-hot with
    smoothing, or the class probabilities), scaled by the weights. Class indices run piece
    by piece (losscli.kernels), in place."""
    x, y = tensors["predictions"], tensors["targets"]
    if x.dim() < 2:  # one unbatched row: autograd
        return None
    if y.is_floating_point():
        return _fused_ce_probabilities(torch, x, y, options, wanted, scale)
    grad = torch.empty_like(x) if "predictions" in wanted else None
    elements = torch.empty(y.shape, dtype=x.dtype, device=x.device)
    for rows in row_pieces(x):
        _ce_indices(
            torch, x[rows], y[rows], options, scale, elements[rows],
            None if grad is None else grad[rows],
        )  # fmt: skip
    return elements, {"predictions": grad}


def _ce_indices(torch, x, y, options, scale, elements, grad) -> None:
    """One piece of rows of CrossEntropyLoss with class-index targets, into ``elements``
    and ``grad`` (None: no gradient). With p the softmax, w the weights, s the smoothing and
    C the classes: the loss is (1-s) w[y] (lse - x[y]) + (s/C) (W lse - sum_c w_c x_c), with
    x shifted by its row's max and W = sum_c w_c, and the gradient is
    scale ((1-s) w[y] + (s/C) W) p - scale (1-s) w[y] at y - scale (s/C) w."""
    weight = options.get("weight")
    smoothing = float(options.get("label_smoothing") or 0.0)
    ignore = options.get("ignore_index", -100)
    classes = x.shape[1]
    kept = y != ignore
    safe = torch.where(kept, y, 0).unsqueeze(1)
    shape = [1] * x.dim()
    shape[1] = classes
    w = None if weight is None else weight.reshape(shape)
    shifted = torch.sub(x, x.amax(dim=1, keepdim=True), out=grad)
    picked = shifted.gather(1, safe).squeeze(1)
    weighted_sum = None
    if smoothing:
        weighted_sum = (shifted if w is None else shifted * w).sum(dim=1)
    exp = shifted.exp_()
    total = exp.sum(dim=1, keepdim=True)
    log_total = total.log().squeeze(1)
    w_y = kept.to(x.dtype) if weight is None else torch.where(kept, weight[safe.squeeze(1)], 0)
    torch.mul(log_total - picked, w_y * (1 - smoothing), out=elements)
    all_weight = classes if weight is None else weight.sum()
    if smoothing:
        smooth = (log_total * all_weight - weighted_sum) * kept
        elements.add_(smooth, alpha=smoothing / classes)
    if grad is None:
        return
    at_target = (w_y * ((1 - smoothing) * scale)).unsqueeze(1)
    row = at_target
    if smoothing:
        row = row + kept.unsqueeze(1).to(x.dtype) * (all_weight * (smoothing / classes) * scale)
    grad.mul_(row / total)
    grad.scatter_add_(1, safe, -at_target)
    if smoothing:
        keep = kept.unsqueeze(1).to(x.dtype)
        grad.sub_(keep if w is None else keep * w, alpha=smoothing / classes * scale)


def _fused_ce_probabilities(torch, x, y, options, wanted, scale):
    """CrossEntropyLoss with class-probability targets (smoothed as torch smooths them)."""
    weight, smoothing = options.get("weight"), float(options.get("label_smoothing") or 0.0)
    classes = x.shape[1]
    shape = [1] * x.dim()
    shape[1] = classes
    w = None if weight is None else weight.reshape(shape)
    shifted = x - x.amax(dim=1, keepdim=True)
    exp = shifted.exp()
    total = exp.sum(dim=1, keepdim=True)
    t = y if not smoothing else y * (1 - smoothing) + smoothing / classes
    wt = t if w is None else t * w
    elements = -(wt * (shifted - total.log())).sum(dim=1)
    grad = None
    if "predictions" in wanted:
        row = wt.sum(dim=1, keepdim=True) * scale
        grad = exp.mul_(row / total).sub_(wt if scale == 1.0 else wt * scale)
    return elements, {"predictions": grad}


def _fused_nll(torch, tensors, options, wanted, scale=1.0):
    """NLLLoss's unreduced loss and the gradient of ``scale`` times its sum w.r.t. the
    log-probabilities: -scale w[y] at the target entry of each row, 0 elsewhere and on
    ignored rows."""
    x, y = tensors["predictions"], tensors["targets"]
    if x.dim() < 2:  # one unbatched row: autograd
        return None
    weight, ignore = options.get("weight"), options.get("ignore_index", -100)
    if x.dim() == 2:  # torch's own loss and backward ops, without autograd
        elements = torch.nn.functional.nll_loss(x, y, weight, ignore_index=ignore, reduction="none")
        grad = None
        if "predictions" in wanted:
            every = torch.full((), scale, dtype=x.dtype, device=x.device).expand(len(y))
            total = torch.zeros((), dtype=x.dtype, device=x.device)  # unused without a mean
            grad = torch.ops.aten.nll_loss_backward(every, x, y, weight, 0, ignore, total)
        return elements, {"predictions": grad}
    axis = 1
    kept = y != ignore
    safe = torch.where(kept, y, torch.zeros_like(y)).unsqueeze(axis)
    w_y = torch.ones(y.shape, dtype=x.dtype, device=x.device)
    if weight is not None:
        w_y = weight[safe.squeeze(axis)]
    w_y = torch.where(kept, w_y, torch.zeros_like(w_y))
    elements = -w_y * x.gather(axis, safe).squeeze(axis)
    grad = None
    if "predictions" in wanted:
        grad = torch.zeros_like(x).scatter_(axis, safe, (w_y * -scale).unsqueeze(axis))
    return elements, {"predictions": grad}


CE = LossSpec(
    name="ce",
    aliases=("cross-entropy",),
    torch_class="CrossEntropyLoss",
    predictions_are="logits",
    class_rows=True,
    class_probability=_softmax_at,
    perplexity=True,
    fused=_fused_ce,
    task="multi-class classification",
    summary="cross-entropy of logits against class indices or class probabilities",
    inputs=(
        InputSpec("predictions", FLOAT, "logits (N,C) or (N,C,d1,...): raw scores, not softmax"),
        InputSpec(
            "targets",
            INDEX,
            "class indices (N) or (N,d1,...) in [0,C), or class probabilities shaped like the "
            "predictions",
        ),
    ),
    options=(
        WEIGHT,
        IGNORE_INDEX,
        OptionSpec(
            "label_smoothing",
            0.0,
            NUMBER,
            "Smoothing mixed into the targets.",
            low=0.0,
            high=1.0,
        ),
    ),
    prepare=_prepare_ce,
    mean_denominator=_class_denominator,
    steps_table=_steps_ce,
    example="losscli ce sample_data/logits.csv sample_data/labels.csv",
    explain=Explain(
        formula=(
            "loss_i = -w[y_i] * log softmax(x_i)[y_i]\n"
            "       = -w[y_i] * (x_i[y_i] - log sum_c exp x_i[c])\n"
            "mean = sum_i loss_i / sum_i w[y_i]   (ignored targets count in neither sum)\n"
            "probability targets: loss_i = -sum_c w[c] * y_i[c] * log softmax(x_i)[c]; "
            "mean divides by N"
        ),
        procedure=(
            "softmax turns each row of logits into probabilities p = exp(x) / sum exp(x)",
            "take the probability of the target class, p[y]",
            "the sample's loss is -log p[y] (times w[y] with --weight)",
            "with --label-smoothing e, mix (1-e) of that with e/C times the sum over all classes",
            "reduce: mean divides by the number (or total weight) of non-ignored targets",
            "gradient w.r.t. the logits: (softmax(x) - one_hot(y)) / N for the unweighted mean",
        ),
        mistakes=(
            "passing probabilities (softmax output): CrossEntropyLoss applies log-softmax itself",
            "passing one-hot rows as class indices: one-hot rows are read as class probabilities",
            "labels counted from 1: indices must lie in 0..C-1",
            "ce = nll(log_softmax(x)): use nll when the model already outputs log-probabilities",
        ),
    ),
)

NLL = LossSpec(
    name="nll",
    torch_class="NLLLoss",
    predictions_are="log-probs",
    class_rows=True,
    class_probability=_exp_at,
    perplexity=True,
    fused=_fused_nll,
    task="multi-class classification",
    summary="negative log-likelihood of log-probabilities at the target classes",
    inputs=(
        InputSpec("predictions", FLOAT, "log-probabilities (N,C) or (N,C,d1,...): log_softmax"),
        InputSpec("targets", INDEX, "class indices (N) or (N,d1,...) in [0,C)"),
    ),
    options=(WEIGHT, IGNORE_INDEX),
    prepare=_prepare_nll,
    mean_denominator=_class_denominator,
    steps_table=_steps_nll,
    example="losscli nll sample_data/log_probs.csv sample_data/labels.csv",
    explain=Explain(
        formula=(
            "loss_i = -w[y_i] * x_i[y_i]   (x = log-probabilities)\n"
            "mean = sum_i loss_i / sum_i w[y_i]"
        ),
        procedure=(
            "pick the log-probability of the target class, x[y]",
            "negate it (times w[y] with --weight)",
            "reduce: mean divides by the number (or total weight) of non-ignored targets",
        ),
        mistakes=(
            "passing logits or probabilities: NLLLoss expects log_softmax output",
            "nll(log_softmax(x)) equals ce(x): use ce on raw logits",
        ),
    ),
)

SPECS = (CE, NLL)
