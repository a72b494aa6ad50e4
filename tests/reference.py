"""Independent NumPy formulas for each loss and its gradient (no torch)."""

from __future__ import annotations

import numpy as np


def log_softmax(x: np.ndarray, axis: int = 1) -> np.ndarray:
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def reduce(per: np.ndarray, reduction: str, denominator: float | None = None):
    if reduction == "none":
        return per
    if reduction == "sum":
        return per.sum()
    return per.sum() / (per.size if denominator is None else denominator)


def _flatten_classes(x: np.ndarray, y: np.ndarray):
    classes = x.shape[1]
    return np.moveaxis(x, 1, -1).reshape(-1, classes), y.reshape(-1)


def cross_entropy(x, y, weight=None, ignore_index=-100, smoothing=0.0, reduction="mean"):
    """CrossEntropyLoss with class-index targets, K-dimensional inputs allowed."""
    flat_x, flat_y = _flatten_classes(np.asarray(x, float), np.asarray(y))
    classes = flat_x.shape[1]
    w = np.ones(classes) if weight is None else np.asarray(weight, float)
    keep = flat_y != ignore_index
    safe = np.where(keep, flat_y, 0)
    logp = log_softmax(flat_x)
    nll = -logp[np.arange(len(safe)), safe] * w[safe]
    smooth = -(logp * w).sum(axis=1) / classes
    per = ((1 - smoothing) * nll + smoothing * smooth) * keep
    return reduce(per.reshape(np.shape(y)), reduction, (w[safe] * keep).sum())


def cross_entropy_probs(x, p, weight=None, smoothing=0.0, reduction="mean"):
    x, p = np.asarray(x, float), np.asarray(p, float)
    classes = x.shape[1]
    w = np.ones(classes) if weight is None else np.asarray(weight, float)
    y = p * (1 - smoothing) + smoothing / classes
    per = -(w * y * log_softmax(x)).sum(axis=1)
    return reduce(per, reduction)


def cross_entropy_grad(x, y):
    """d mean CE / d logits = (softmax - one_hot) / N."""
    x = np.asarray(x, float)
    softmax = np.exp(log_softmax(x))
    one_hot = np.eye(x.shape[1])[np.asarray(y)]
    return (softmax - one_hot) / len(x)


def nll(logp, y, weight=None, ignore_index=-100, reduction="mean"):
    logp, y = np.asarray(logp, float), np.asarray(y)
    w = np.ones(logp.shape[1]) if weight is None else np.asarray(weight, float)
    keep = y != ignore_index
    safe = np.where(keep, y, 0)
    per = -logp[np.arange(len(y)), safe] * w[safe] * keep
    return reduce(per, reduction, (w[safe] * keep).sum())


def mse(x, y, reduction="mean"):
    return reduce((np.asarray(x, float) - np.asarray(y, float)) ** 2, reduction)


def l1(x, y, reduction="mean"):
    return reduce(np.abs(np.asarray(x, float) - np.asarray(y, float)), reduction)


def bce(p, y, weight=None, reduction="mean"):
    p, y = np.asarray(p, float), np.asarray(y, float)
    with np.errstate(divide="ignore"):
        log_p = np.maximum(np.log(p), -100)
        log_q = np.maximum(np.log(1 - p), -100)
    per = -(y * log_p + (1 - y) * log_q)
    if weight is not None:
        per = per * np.asarray(weight, float)
    return reduce(per, reduction)
