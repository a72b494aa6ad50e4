"""Regression losses: MSE, L1, Huber, smooth L1, Poisson NLL and Gaussian NLL."""

from __future__ import annotations

from typing import TYPE_CHECKING

from losscli.errors import InputError
from losscli.kernels import flat_pieces
from losscli.registry import (
    FLAG,
    FLOAT,
    LABEL,
    NUMBER,
    SWITCH,
    Explain,
    InputSpec,
    LossSpec,
    OptionSpec,
    shared_prepare,
)
from losscli.steps import Steps, element_rows

prepare_same_shape = shared_prepare("prepare_same_shape")

ORDER = 20  # where its losses stand in `list` and the help

if TYPE_CHECKING:
    from losscli.validate import Context, Prepared


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


def _fused_difference(loss_and_slope):
    """A fused kernel for a loss of d = x - y: ``loss_and_slope(torch, d, options)`` gives
    the elements and dloss/dd; the gradients are scale slope and -scale slope."""

    def fused(torch, tensors, options, wanted, scale=1.0):
        x, y = tensors["predictions"], tensors["targets"]
        if x.shape != y.shape:  # broadcast: one piece
            elements, slope = loss_and_slope(torch, x - y, options)
            slope = slope.mul_(scale) if scale != 1.0 else slope
        else:  # piece by piece (losscli.kernels), into arrays made once
            x, y = x.contiguous(), y.contiguous()
            elements, slope = torch.empty_like(x), torch.empty_like(x)
            flat = (x.view(-1), y.view(-1), elements.view(-1), slope.view(-1))
            for piece in flat_pieces(x):
                xs, ys, losses, slopes = (t[piece] for t in flat)
                got, steep = loss_and_slope(torch, torch.sub(xs, ys, out=slopes), options)
                losses.copy_(got)
                slopes.copy_(steep) if scale == 1.0 else torch.mul(steep, scale, out=slopes)
        grads = {}
        if "predictions" in wanted:
            grads["predictions"] = slope
        if "targets" in wanted:
            grads["targets"] = -slope
        return elements, grads

    return fused


def _absolute(torch, d, options):
    return d.abs(), d.sign()


def _fused_aten(function: str, backward: str, parameter: str | None = None):
    """A fused kernel from torch's own elementwise loss and its backward op, called without
    autograd (each one vectorised pass): the loss ``torch.nn.functional.<function>`` with
    reduction none, and ``torch.ops.aten.<backward>`` of ``scale`` at every element (a
    broadcast scalar) for the gradient; the targets' is its negative."""

    def fused(torch, tensors, options, wanted, scale=1.0):
        x, y = tensors["predictions"], tensors["targets"]
        if x.shape != y.shape:  # broadcast: autograd
            return None
        given = {parameter: float(options[parameter])} if parameter else {}
        elements = getattr(torch.nn.functional, function)(x, y, reduction="none", **given)
        grads = {}
        if wanted:
            every = torch.full((), scale, dtype=x.dtype, device=x.device).expand_as(x)
            slope = getattr(torch.ops.aten, backward)(every, x, y, 0, *given.values())
            if "predictions" in wanted:
                grads["predictions"] = slope
            if "targets" in wanted:
                grads["targets"] = slope.neg()
        return elements, grads

    return fused


_smooth_l1_aten = _fused_aten("smooth_l1_loss", "smooth_l1_loss_backward", "beta")
_l1 = _fused_difference(_absolute)


def _fused_smooth_l1(torch, tensors, options, wanted, scale=1.0):
    """SmoothL1Loss: torch computes L1 at beta 0 (slope 0 where x = y), else its own ops."""
    kernel = _l1 if float(options["beta"]) == 0 else _smooth_l1_aten
    return kernel(torch, tensors, options, wanted, scale)


MSE = LossSpec(
    name="mse",
    torch_class="MSELoss",
    fused=_fused_aten("mse_loss", "mse_loss_backward"),
    task="regression",
    summary="mean squared error between predictions and targets",
    inputs=PAIR,
    prepare=prepare_same_shape,
    steps_table=_steps_mse,
    example="losscli mse sample_data/y_pred.csv sample_data/y_true.csv",
    explain=Explain(
        formula="loss_j = (x_j - y_j)^2 for every element j; mean = sum_j loss_j / numel",
        procedure=(
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
    fused=_l1,
    task="regression",
    summary="mean absolute error between predictions and targets",
    inputs=PAIR,
    prepare=prepare_same_shape,
    steps_table=_steps_l1,
    example="losscli l1 sample_data/y_pred.csv sample_data/y_true.csv",
    explain=Explain(
        formula="loss_j = |x_j - y_j| for every element j; mean = sum_j loss_j / numel",
        procedure=(
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


def _steps_huber(arrays, options, limit) -> Steps:
    preds, targets = element_rows(arrays, limit)
    delta = options["delta"]
    steps = Steps(["element", "prediction", "target", "|difference|", "branch", "loss"])
    for i, (p, y) in enumerate(zip(preds, targets)):
        d = abs(p - y)
        quadratic = d < delta
        loss = 0.5 * d**2 if quadratic else delta * (d - 0.5 * delta)
        steps.rows.append([i + 1, p, y, d, "0.5 d^2" if quadratic else "delta (d - delta/2)", loss])
    steps.notes.append(f"delta = {delta}: quadratic below delta, linear above")
    return steps


def _steps_smooth_l1(arrays, options, limit) -> Steps:
    preds, targets = element_rows(arrays, limit)
    beta = options["beta"]
    steps = Steps(["element", "prediction", "target", "|difference|", "branch", "loss"])
    for i, (p, y) in enumerate(zip(preds, targets)):
        d = abs(p - y)
        quadratic = d < beta
        loss = 0.5 * d**2 / beta if quadratic else d - 0.5 * beta
        steps.rows.append([i + 1, p, y, d, "0.5 d^2 / beta" if quadratic else "d - beta/2", loss])
    steps.notes.append(f"beta = {beta}: quadratic below beta, linear above (beta 0 is L1)")
    return steps


def _prepare_poisson(inputs, options, ctx: Context) -> Prepared:
    from losscli.validate import at_least

    prepared = prepare_same_shape(inputs, options, ctx)
    at_least("target", inputs["targets"], 0.0, "poisson-nll targets are counts (>= 0)")
    if not options["log_input"]:
        at_least(
            "prediction",
            inputs["predictions"],
            0.0,
            "with --no-log-input the predictions are rates (>= 0); drop it for log-rates",
        )
    return prepared


def poisson_elements(x, y, log_input: bool, full: bool, eps: float):
    """PoissonNLLLoss per element, in NumPy."""
    import numpy as np

    loss = np.exp(x) - y * x if log_input else x - y * np.log(x + eps)
    if full:
        safe = np.where(y > 1, y, 1.0)
        stirling = safe * np.log(safe) - safe + 0.5 * np.log(2 * np.pi * safe)
        loss = loss + np.where(y > 1, stirling, 0.0)
    return loss


def _steps_poisson(arrays, options, limit) -> Steps:
    preds, targets = element_rows(arrays, limit)
    formula = "exp(x) - y x" if options["log_input"] else "x - y log(x + eps)"
    steps = Steps(["element", "prediction x", "target y", formula, "loss"])
    base = poisson_elements(preds, targets, options["log_input"], False, options["eps"])
    full = poisson_elements(preds, targets, options["log_input"], options["full"], options["eps"])
    for i in range(len(preds)):
        steps.rows.append([i + 1, preds[i], targets[i], base[i], full[i]])
    if options["full"]:
        steps.notes.append("--full adds the Stirling term y log y - y + 0.5 log(2 pi y) for y > 1")
    return steps


VAR_SHAPES = (
    "var must have the predictions' shape, that shape with the last dimension 1, "
    "or that shape without its last dimension"
)


def _prepare_gaussian(inputs, options, ctx: Context) -> Prepared:
    from losscli.validate import at_least, check_finite, shape_error

    prepared = prepare_same_shape(inputs, options, ctx)
    var = inputs["var"]
    check_finite("var", var, ctx)
    shape, var_shape = prepared.arrays["predictions"].shape, var.array.shape
    homoscedastic = shape[:-1] == var_shape
    if not (
        var_shape == shape
        or homoscedastic
        or (var_shape[:-1] == shape[:-1] and var_shape[-1:] == (1,))
    ):
        raise shape_error(("predictions", inputs["predictions"]), ("var", var), VAR_SHAPES)
    if len(shape) == 1 and var_shape != shape:
        # 1-D predictions and a var of shape () or (1,), which torch broadcasts over every
        # row: the gradient of such a var is a sum over all rows, which blocks, chunks, the
        # gradient summary and merged states do not make; refused rather than half right.
        rows = inputs["predictions"].shape[0]
        raise InputError(
            f"var ({var.source}) has shape {var.shape}, one variance for all {rows} rows of "
            f"predictions ({inputs['predictions'].source}); give one variance per row (shape "
            f"[{rows}], e.g. np.full({rows}, v))"
        )
    at_least("var", var, 0.0, "variances must be positive", strict=True)
    prepared.arrays["var"] = var.array
    return prepared


def _steps_gaussian(arrays, options, limit) -> Steps:
    import numpy as np

    preds, targets = element_rows(arrays, limit)
    var = arrays["var"]
    if arrays["predictions"].ndim and var.shape == arrays["predictions"].shape[:-1]:
        var = var[..., None]  # one variance per row, as torch reads it
    var = np.broadcast_to(var, arrays["predictions"].shape).reshape(-1)[:limit]
    var = np.maximum(np.asarray(var, dtype=np.float64), options["eps"])
    steps = Steps(
        ["element", "prediction", "target", "var", "0.5 log var", "0.5 d^2 / var", "loss"]
    )
    constant = 0.5 * np.log(2 * np.pi) if options["full"] else 0.0
    for i in range(len(preds)):
        a, b = 0.5 * np.log(var[i]), 0.5 * (preds[i] - targets[i]) ** 2 / var[i]
        steps.rows.append([i + 1, preds[i], targets[i], var[i], a, b, a + b + constant])
    steps.notes.append(
        "var is clamped below at --eps" + ("; --full adds 0.5 log(2 pi)" if options["full"] else "")
    )
    return steps


HUBER = LossSpec(
    name="huber",
    torch_class="HuberLoss",
    fused=_fused_aten("huber_loss", "huber_loss_backward", "delta"),
    task="robust regression",
    summary="squared error near the target, absolute error (scaled by delta) beyond delta",
    inputs=PAIR,
    options=(
        OptionSpec(
            "delta",
            1.0,
            NUMBER,
            "Where the loss turns from quadratic to linear.",
            low=0.0,
            open_low=True,
        ),
    ),
    prepare=prepare_same_shape,
    steps_table=_steps_huber,
    example="losscli huber sample_data/y_pred.csv sample_data/y_true.csv --delta 0.5",
    explain=Explain(
        formula=(
            "d_j = |x_j - y_j|; loss_j = 0.5 d_j^2 if d_j < delta else delta (d_j - 0.5 delta)\n"
            "mean = sum_j loss_j / numel"
        ),
        procedure=(
            "take the absolute difference d between prediction and target",
            "below delta, the loss is 0.5 d^2 (like MSE / 2); above, delta (d - delta/2)",
            "reduce: mean divides by the number of elements",
            "gradient: (x - y) inside delta, delta * sign(x - y) outside, over numel",
        ),
        mistakes=(
            "confusing it with smooth-l1: huber = beta * smooth_l1 when delta = beta",
            "--delta must be > 0",
        ),
    ),
)

SMOOTH_L1 = LossSpec(
    name="smooth-l1",
    torch_class="SmoothL1Loss",
    fused=_fused_smooth_l1,
    task="robust regression",
    summary="squared error divided by beta near the target, absolute error beyond beta",
    inputs=PAIR,
    options=(
        OptionSpec("beta", 1.0, NUMBER, "Where the loss turns from quadratic to linear.", low=0.0),
    ),
    prepare=prepare_same_shape,
    steps_table=_steps_smooth_l1,
    example="losscli smooth-l1 sample_data/y_pred.csv sample_data/y_true.csv --beta 0.5",
    explain=Explain(
        formula=(
            "d_j = |x_j - y_j|; loss_j = 0.5 d_j^2 / beta if d_j < beta else d_j - 0.5 beta\n"
            "mean = sum_j loss_j / numel"
        ),
        procedure=(
            "take the absolute difference d",
            "below beta, the loss is 0.5 d^2 / beta; above, d - beta/2",
            "reduce: mean divides by the number of elements",
        ),
        mistakes=(
            "beta 0 turns it into L1Loss",
            "the gradient beyond beta has size 1 whatever beta is (huber's has size delta)",
        ),
    ),
)

POISSON_NLL = LossSpec(
    name="poisson-nll",
    torch_class="PoissonNLLLoss",
    task="count regression",
    summary="negative log-likelihood of counts under a Poisson rate",
    inputs=(
        InputSpec("predictions", FLOAT, "log-rates (rates with --no-log-input), any shape"),
        InputSpec("targets", LABEL, "counts >= 0, the predictions' shape"),
    ),
    options=(
        OptionSpec("log_input", True, SWITCH, "Predictions are log-rates (on) or rates (off)."),
        OptionSpec("full", False, FLAG, "Add the Stirling approximation term."),
        OptionSpec(
            "eps",
            1e-8,
            NUMBER,
            "Added to rates before the log with --no-log-input.",
            low=0.0,
        ),
    ),
    prepare=_prepare_poisson,
    steps_table=_steps_poisson,
    example="losscli poisson-nll sample_data/poisson_log_rates.csv sample_data/counts.csv",
    explain=Explain(
        formula=(
            "log_input: loss_j = exp(x_j) - y_j x_j\n"
            "otherwise: loss_j = x_j - y_j log(x_j + eps)\n"
            "--full adds y log y - y + 0.5 log(2 pi y) where y > 1; mean = sum / numel"
        ),
        procedure=(
            "turn the prediction into a rate: exp(x) for log-rates, x itself otherwise",
            "loss = rate - y log(rate), dropping the constant log(y!) unless --full",
            "reduce: mean divides by the number of elements",
        ),
        mistakes=(
            "passing rates while --log-input is on (the default): exp makes them huge",
            "negative counts: a Poisson target is a count >= 0",
        ),
    ),
)

GAUSSIAN_NLL = LossSpec(
    name="gaussian-nll",
    torch_class="GaussianNLLLoss",
    task="regression with predicted variance",
    summary="negative log-likelihood of targets under a Gaussian with predicted mean and variance",
    inputs=(
        InputSpec("predictions", FLOAT, "predicted means, any shape (N,*)"),
        InputSpec("targets", FLOAT, "the predictions' shape"),
        InputSpec(
            "var",
            FLOAT,
            "predicted variances > 0: the predictions' shape, or with the last dimension 1 or "
            "dropped (one variance per row)",
        ),
    ),
    options=(
        OptionSpec("full", False, FLAG, "Add the constant 0.5 log(2 pi)."),
        OptionSpec("eps", 1e-6, NUMBER, "Variances are clamped below at eps.", low=0.0),
    ),
    prepare=_prepare_gaussian,
    steps_table=_steps_gaussian,
    example=(
        "losscli gaussian-nll sample_data/y_pred.csv sample_data/y_true.csv sample_data/var.csv"
    ),
    explain=Explain(
        formula=(
            "loss_j = 0.5 (log max(var_j, eps) + (x_j - y_j)^2 / max(var_j, eps))"
            "  (+ 0.5 log(2 pi) with --full)\n"
            "mean = sum_j loss_j / numel"
        ),
        procedure=(
            "clamp the variance at eps",
            "add half its log to half the squared error divided by it",
            "reduce: mean divides by the number of elements",
            "gradients flow to the predictions, the targets and the variances",
        ),
        mistakes=(
            "passing standard deviations instead of variances",
            "negative or zero variances: losscli refuses them (torch would clamp or fail)",
        ),
    ),
)

SPECS = (MSE, L1, HUBER, SMOOTH_L1, POISSON_NLL, GAUSSIAN_NLL)
