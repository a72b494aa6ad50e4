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


def sigmoid(x):
    return 1 / (1 + np.exp(-np.asarray(x, float)))


def huber(x, y, delta=1.0, reduction="mean"):
    d = np.abs(np.asarray(x, float) - y)
    return reduce(np.where(d < delta, 0.5 * d**2, delta * (d - 0.5 * delta)), reduction)


def smooth_l1(x, y, beta=1.0, reduction="mean"):
    d = np.abs(np.asarray(x, float) - y)
    if beta == 0:
        return reduce(d, reduction)
    return reduce(np.where(d < beta, 0.5 * d**2 / beta, d - 0.5 * beta), reduction)


def bce_with_logits(x, y, weight=None, pos_weight=None, reduction="mean"):
    p = sigmoid(x)
    pw = 1.0 if pos_weight is None else np.asarray(pos_weight, float)
    per = -(pw * y * np.log(p) + (1 - y) * np.log(1 - p))
    if weight is not None:
        per = per * np.asarray(weight, float)
    return reduce(per, reduction)


def focal(x, y, alpha=0.25, gamma=2.0, reduction="mean"):
    """The sigmoid focal loss, written from the paper's definition (Lin et al., 2017)."""
    p = sigmoid(x)
    p_t = np.where(y == 1, p, 1 - p) if np.isin(y, (0, 1)).all() else p * y + (1 - p) * (1 - y)
    ce = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    per = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        per = per * (alpha * y + (1 - alpha) * (1 - y))
    return reduce(per, reduction)


def soft_margin(x, y, reduction="mean"):
    return reduce(np.log(1 + np.exp(-np.asarray(y, float) * x)), reduction)


def multilabel_soft_margin(x, y, weight=None, reduction="mean"):
    p = sigmoid(x)
    w = 1.0 if weight is None else np.asarray(weight, float)
    per = -(w * (y * np.log(p) + (1 - y) * np.log(1 - p))).mean(axis=1)
    return reduce(per, reduction)


def kl_div(x, t, log_target=False, reduction="mean"):
    x, t = np.asarray(x, float), np.asarray(t, float)
    p = np.exp(t) if log_target else t
    log_p = t if log_target else np.log(np.where(t > 0, t, 1.0))
    per = np.where(p > 0, p * (log_p - x), 0.0)
    if reduction == "batchmean":
        return per.sum() / x.shape[0]
    return reduce(per, reduction)


def poisson_nll(x, y, log_input=True, full=False, eps=1e-8, reduction="mean"):
    x, y = np.asarray(x, float), np.asarray(y, float)
    per = np.exp(x) - y * x if log_input else x - y * np.log(x + eps)
    if full:
        import math

        stirling = np.array(
            [
                v * math.log(v) - v + 0.5 * math.log(2 * math.pi * v) if v > 1 else 0.0
                for v in y.ravel()
            ]
        ).reshape(y.shape)
        per = per + stirling
    return reduce(per, reduction)


def gaussian_nll(x, y, var, full=False, eps=1e-6, reduction="mean"):
    x, y = np.asarray(x, float), np.asarray(y, float)
    var = np.maximum(np.broadcast_to(np.asarray(var, float), x.shape), eps)
    per = 0.5 * (np.log(var) + (x - y) ** 2 / var)
    if full:
        per = per + 0.5 * np.log(2 * np.pi)
    return reduce(per, reduction)


def hinge_embedding(x, y, margin=1.0, reduction="mean"):
    x = np.asarray(x, float)
    return reduce(np.where(np.asarray(y) == 1, x, np.maximum(0, margin - x)), reduction)


def multi_margin(x, y, p=1, margin=1.0, weight=None, reduction="mean"):
    x = np.asarray(x, float)
    n, c = x.shape
    w = np.ones(c) if weight is None else np.asarray(weight, float)
    per = np.zeros(n)
    for i in range(n):
        for j in range(c):
            if j != y[i]:
                # torch multiplies by the weight after the power (its docs show it inside)
                per[i] += w[y[i]] * max(0.0, margin - x[i, y[i]] + x[i, j]) ** p
    return reduce(per / c, reduction)


def multilabel_margin(x, targets, reduction="mean"):
    x = np.asarray(x, float)
    n, c = x.shape
    per = np.zeros(n)
    for i in range(n):
        chosen = []
        for v in targets[i]:
            if v == -1:
                break
            chosen.append(int(v))
        for j in set(chosen):
            for k in range(c):
                if k not in chosen:
                    per[i] += max(0.0, 1 - (x[i, j] - x[i, k]))
    return reduce(per / c, reduction)


def cosine_embedding(a, b, y, margin=0.0, reduction="mean"):
    a, b = np.asarray(a, float), np.asarray(b, float)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return reduce(np.where(np.asarray(y) == 1, 1 - cos, np.maximum(0, cos - margin)), reduction)


def margin_ranking(a, b, y, margin=0.0, reduction="mean"):
    return reduce(np.maximum(0, -np.asarray(y) * (np.asarray(a) - b) + margin), reduction)


def triplet_margin(a, p_, n_, margin=1.0, p=2.0, eps=1e-6, swap=False, reduction="mean"):
    def dist(u, v):
        return np.sum(np.abs(u - v + eps) ** p, axis=1) ** (1 / p)

    d_ap, d_an = dist(a, p_), dist(a, n_)
    if swap:
        d_an = np.minimum(d_an, dist(p_, n_))
    return reduce(np.maximum(0, d_ap - d_an + margin), reduction)


def ctc_by_enumeration(log_probs, target, blank=0):
    """-log p(target) by summing every alignment path (tiny T and C only)."""
    import itertools

    frames, classes = log_probs.shape
    total = -np.inf
    for path in itertools.product(range(classes), repeat=frames):
        collapsed = [k for i, k in enumerate(path) if i == 0 or k != path[i - 1]]
        if [k for k in collapsed if k != blank] == list(target):
            total = np.logaddexp(total, sum(log_probs[t, k] for t, k in enumerate(path)))
    return -total


def ctc(log_probs, targets, input_lengths, target_lengths, reduction="mean"):
    """CTCLoss over a batch of padded targets, by enumeration; mean divides each sequence's
    loss by its target length, then averages."""
    per = np.array(
        [
            ctc_by_enumeration(log_probs[: input_lengths[i], i], targets[i, : target_lengths[i]])
            for i in range(len(targets))
        ]
    )
    if reduction == "mean":
        return np.mean(per / np.maximum(target_lengths, 1))
    return reduce(per, reduction)
