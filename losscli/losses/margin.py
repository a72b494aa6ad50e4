"""Margin and embedding losses: hinge embedding, multi-class and multi-label margins,
cosine embedding, margin ranking and triplet margin."""

from __future__ import annotations

from typing import TYPE_CHECKING

from losscli.errors import InputError
from losscli.registry import (
    FLAG,
    FLOAT,
    INDEX,
    INTEGER,
    LABEL,
    NUMBER,
    WEIGHT,
    Explain,
    InputSpec,
    LossSpec,
    OptionSpec,
    margin_option,
    shared_prepare,
)
from losscli.steps import Steps, element_rows

ORDER = 50  # where its losses stand in `list` and the help

if TYPE_CHECKING:
    from losscli.validate import Context, Prepared


def _steps_hinge(arrays, options, limit) -> Steps:
    preds, targets = element_rows(arrays, limit)
    margin = options["margin"]
    steps = Steps(["element", "x (distance)", "y", "branch", "loss"])
    for i, (x, y) in enumerate(zip(preds, targets)):
        if y == 1:
            steps.rows.append([i + 1, x, y, "x", x])
        else:
            steps.rows.append([i + 1, x, y, "max(0, margin - x)", max(0.0, margin - x)])
    steps.notes.append(f"margin = {margin}")
    return steps


def _prepare_multi_margin(inputs, options, ctx: Context) -> Prepared:
    from losscli.validate import (
        Prepared,
        check_finite,
        class_indices,
        require_2d,
        shape_error,
        vector_length,
    )

    preds, targets = inputs["predictions"], inputs["targets"]
    check_finite("predictions", preds, ctx)
    check_finite("targets", targets, ctx)
    require_2d("predictions", preds, "multi-margin needs (N,C) scores")
    num_classes = preds.array.shape[1]
    if targets.array.shape not in ((len(preds.array),), (len(preds.array), 1)):
        raise shape_error(("predictions", preds), ("targets", targets), "it accepts (N,C) with (N)")
    targets = targets.with_array(targets.array.reshape(-1))
    vector_length("--weight", options["weight"], num_classes, "classes")
    indices = class_indices("target", targets, num_classes, ctx, class_names=preds.header)
    return Prepared(
        {"predictions": preds.array, "targets": indices}, dict(options), "class indices"
    )


def _steps_multi_margin(arrays, options, limit) -> Steps:
    import numpy as np

    x = np.asarray(arrays["predictions"][:limit], dtype=np.float64)
    y = arrays["targets"][:limit]
    w = options["weight"] if options["weight"] is not None else np.ones(x.shape[1])
    steps = Steps(["row", "scores", "target", "margin - x[y] + x[j] (j != y)", "loss"])
    for i in range(len(x)):
        gaps = options["margin"] - x[i, y[i]] + x[i]
        terms = w[y[i]] * np.maximum(0.0, gaps) ** options["p"]
        terms[y[i]] = 0.0
        steps.rows.append([i + 1, x[i], int(y[i]), np.delete(gaps, y[i]), terms.sum() / x.shape[1]])
    steps.notes.append(f"loss = sum_j w[y] max(0, margin - x[y] + x[j])^{options['p']} / C")
    return steps


def _prepare_multilabel_margin(inputs, options, ctx: Context) -> Prepared:
    import numpy as np

    from losscli.validate import Prepared, check_finite, require_2d, shape_error, shown

    preds, targets = inputs["predictions"], inputs["targets"]
    check_finite("predictions", preds, ctx)
    check_finite("targets", targets, ctx)
    require_2d("predictions", preds, "multilabel-margin needs (N,C) scores")
    if targets.array.shape != preds.array.shape:
        raise shape_error(
            ("predictions", preds),
            ("targets", targets),
            "it accepts (N,C) scores with (N,C) class indices padded with -1",
        )
    labels = targets.array
    if labels.dtype.kind not in "iuf":
        raise InputError(f"{targets.source}: targets must be class indices (numbers)")
    num_classes = preds.array.shape[1]
    bad = (labels != np.floor(labels)) | (labels < -1) | (labels >= num_classes)
    if bad.any():
        where = tuple(np.argwhere(bad)[0])
        raise InputError(
            f"{targets.where(where)}: target {shown(labels[where])} is not a class index; "
            f"valid: 0..{num_classes - 1}, with -1 ending a row's list"
        )
    return Prepared(
        {"predictions": preds.array, "targets": labels.astype(np.int64)},
        {},
        "class indices, -1 padded",
    )


def _steps_multilabel_margin(arrays, options, limit) -> Steps:
    import numpy as np

    x = np.asarray(arrays["predictions"][:limit], dtype=np.float64)
    y = arrays["targets"][:limit]
    steps = Steps(["row", "scores", "target classes", "pairs", "loss"])
    for i in range(len(x)):
        row = y[i]
        end = int(np.argmax(row == -1)) if (row == -1).any() else len(row)
        positive = sorted(set(int(c) for c in row[:end]))
        others = [k for k in range(x.shape[1]) if k not in positive]
        total = sum(max(0.0, 1 - (x[i, j] - x[i, k])) for j in positive for k in others)
        steps.rows.append(
            [i + 1, x[i], str(positive), len(positive) * len(others), total / x.shape[1]]
        )
    steps.notes.append("loss = sum over (target j, other k) of max(0, 1 - (x[j] - x[k])) / C")
    return steps


def _prepare_pair_embedding(inputs, options, ctx: Context, *, matrix: bool) -> Prepared:
    """x1, x2 of one shape and +1/-1 targets, one per row (cosine) or element (ranking)."""
    from losscli.validate import (
        SAME_SHAPE,
        Prepared,
        check_finite,
        require_2d,
        same_shape,
        shape_error,
        sign_labels,
    )

    x1, x2, targets = inputs["x1"], inputs["x2"], inputs["targets"]
    for name in ("x1", "x2"):
        check_finite(name, inputs[name], ctx)
    if matrix:
        require_2d("x1", x1, "cosine-embedding needs (N,D) embeddings")
    x2_array = same_shape(("x1", x1), ("x2", x2), "it accepts x1 and x2 of one shape", ctx)
    if matrix:
        n = len(x1.array)
        if targets.array.shape not in ((n,), (n, 1)):
            raise shape_error(("x1", x1), ("targets", targets), "it accepts (N,D) with (N)")
        shaped = targets.array.reshape(n)
    else:
        shaped = same_shape(("x1", x1), ("targets", targets), SAME_SHAPE, ctx)
    labels = sign_labels("target", targets.with_array(shaped))
    return Prepared({"x1": x1.array, "x2": x2_array, "targets": labels}, dict(options))


def _prepare_cosine(inputs, options, ctx: Context) -> Prepared:
    return _prepare_pair_embedding(inputs, options, ctx, matrix=True)


def _prepare_ranking(inputs, options, ctx: Context) -> Prepared:
    return _prepare_pair_embedding(inputs, options, ctx, matrix=False)


def cosine_similarity(a, b):
    """Row-wise cosine similarity as torch's CosineEmbeddingLoss computes it."""
    import numpy as np

    eps = 1e-12
    return (a * b).sum(1) / np.sqrt(((a * a).sum(1) + eps) * ((b * b).sum(1) + eps))


def _steps_cosine(arrays, options, limit) -> Steps:
    import numpy as np

    a = np.asarray(arrays["x1"][:limit], dtype=np.float64)
    b = np.asarray(arrays["x2"][:limit], dtype=np.float64)
    y = np.asarray(arrays["targets"][:limit], dtype=np.float64)
    cos = cosine_similarity(a, b)
    steps = Steps(["row", "cos(x1, x2)", "y", "branch", "loss"])
    for i in range(len(a)):
        if y[i] == 1:
            steps.rows.append([i + 1, cos[i], y[i], "1 - cos", 1 - cos[i]])
        else:
            steps.rows.append(
                [i + 1, cos[i], y[i], "max(0, cos - margin)", max(0.0, cos[i] - options["margin"])]
            )
    steps.notes.append(f"margin = {options['margin']}")
    return steps


def _steps_ranking(arrays, options, limit) -> Steps:
    import numpy as np

    a = np.asarray(arrays["x1"], dtype=np.float64).reshape(-1)[:limit]
    b = np.asarray(arrays["x2"], dtype=np.float64).reshape(-1)[:limit]
    y = np.asarray(arrays["targets"], dtype=np.float64).reshape(-1)[:limit]
    steps = Steps(["element", "x1", "x2", "y", "-y (x1 - x2) + margin", "loss"])
    for i in range(len(a)):
        value = -y[i] * (a[i] - b[i]) + options["margin"]
        steps.rows.append([i + 1, a[i], b[i], y[i], value, max(0.0, value)])
    return steps


def _prepare_triplet(inputs, options, ctx: Context) -> Prepared:
    from losscli.validate import Prepared, check_finite, require_2d, same_shape

    anchor = inputs["anchor"]
    for name in ("anchor", "positive", "negative"):
        check_finite(name, inputs[name], ctx)
    require_2d("anchor", anchor, "triplet-margin needs (N,D) embeddings")
    accepts = "it accepts anchor, positive and negative of one shape (N,D)"
    arrays = {"anchor": anchor.array}
    for name in ("positive", "negative"):
        arrays[name] = same_shape(("anchor", anchor), (name, inputs[name]), accepts, ctx)
    return Prepared(arrays, dict(options))


def pairwise_distance(a, b, p: float, eps: float):
    """||a - b + eps||_p per row, as torch.nn.functional.pairwise_distance computes it."""
    import numpy as np

    return (np.abs(a - b + eps) ** p).sum(axis=1) ** (1 / p)


def _steps_triplet(arrays, options, limit) -> Steps:
    import numpy as np

    a, pos, neg = (
        np.asarray(arrays[n][:limit], dtype=np.float64) for n in ("anchor", "positive", "negative")
    )
    p, eps, margin = options["p"], options["eps"], options["margin"]
    d_ap, d_an = pairwise_distance(a, pos, p, eps), pairwise_distance(a, neg, p, eps)
    columns = ["row", "d(a,p)", "d(a,n)"]
    if options["swap"]:
        d_pn = pairwise_distance(pos, neg, p, eps)
        columns.append("d(p,n)")
    steps = Steps(columns + ["d(a,p) - d(a,n) + margin", "loss = max(0, .)"])
    for i in range(len(a)):
        negative = min(d_an[i], d_pn[i]) if options["swap"] else d_an[i]
        value = d_ap[i] - negative + margin
        row = [i + 1, d_ap[i], d_an[i]] + ([d_pn[i]] if options["swap"] else [])
        steps.rows.append(row + [value, max(0.0, value)])
    steps.notes.append(
        f"margin = {margin}, p = {p}"
        + ("; --swap uses min(d(a,n), d(p,n))" if options["swap"] else "")
    )
    return steps


SIGNS = "+1 or -1"

HINGE_EMBEDDING = LossSpec(
    name="hinge-embedding",
    torch_class="HingeEmbeddingLoss",
    task="similarity learning (+1/-1 labels)",
    summary="x for similar pairs (y=1), max(0, margin - x) for dissimilar ones (y=-1)",
    inputs=(
        InputSpec("predictions", FLOAT, "distances (e.g. L1 distance of a pair), any shape"),
        InputSpec("targets", LABEL, f"{SIGNS}, the predictions' shape"),
    ),
    options=(margin_option(1.0),),
    prepare=shared_prepare("prepare_sign_targets"),
    steps_table=_steps_hinge,
    example="losscli hinge-embedding sample_data/distances.csv sample_data/signs.csv",
    explain=Explain(
        formula="loss_j = x_j if y_j = 1 else max(0, margin - x_j); mean = sum / numel",
        procedure=(
            "for similar pairs (y = 1) the loss is the distance itself",
            "for dissimilar pairs (y = -1) it is how far the distance falls short of the margin",
            "reduce: mean divides by the number of elements",
        ),
        mistakes=(
            "passing similarities instead of distances",
            "0/1 labels: targets must be +1/-1",
        ),
    ),
)

MULTI_MARGIN = LossSpec(
    name="multi-margin",
    torch_class="MultiMarginLoss",
    task="multi-class classification (SVM-style hinge)",
    summary="multi-class hinge loss: every other class must score margin below the target",
    inputs=(
        InputSpec("predictions", FLOAT, "scores (N,C)"),
        InputSpec("targets", INDEX, "class indices (N) in [0,C)"),
    ),
    options=(
        OptionSpec("p", 1, INTEGER, "Exponent of the hinge.", choices=(1, 2)),
        margin_option(1.0),
        WEIGHT,
    ),
    prepare=_prepare_multi_margin,
    steps_table=_steps_multi_margin,
    example="losscli multi-margin sample_data/logits.csv sample_data/labels.csv",
    explain=Explain(
        formula=(
            "loss_i = sum_{j != y_i} w[y_i] max(0, margin - x_i[y_i] + x_i[j])^p / C\n"
            "mean = sum_i loss_i / N"
        ),
        procedure=(
            "for each wrong class j, compare its score with the target's: margin - x[y] + x[j]",
            "keep the positive part, raised to p (1 or 2), times w[y]",
            "sum over wrong classes and divide by C (all classes, the target included)",
            "reduce: mean divides by N",
        ),
        mistakes=(
            "--p other than 1 or 2: torch supports only those",
            "expecting a division by C - 1: torch divides by C",
            "torch's docs put w[y] inside the power; torch multiplies after it, as shown here",
        ),
    ),
)

MULTILABEL_MARGIN = LossSpec(
    name="multilabel-margin",
    torch_class="MultiLabelMarginLoss",
    task="multi-label classification (hinge)",
    summary="multi-label hinge loss: each target class must outscore each other class by 1",
    inputs=(
        InputSpec("predictions", FLOAT, "scores (N,C)"),
        InputSpec(
            "targets",
            INDEX,
            "(N,C) class indices of each row's target classes, then -1 (the rest is ignored)",
        ),
    ),
    prepare=_prepare_multilabel_margin,
    steps_table=_steps_multilabel_margin,
    example="losscli multilabel-margin sample_data/bce_logits.csv sample_data/ml_labels.csv",
    explain=Explain(
        formula=(
            "loss_i = sum_{j in T_i} sum_{k not in T_i} max(0, 1 - (x_i[j] - x_i[k])) / C\n"
            "T_i = the indices of row i before its first -1; mean = sum_i loss_i / N"
        ),
        procedure=(
            "read each row's target classes up to its first -1",
            "for every pair (target j, non-target k) take max(0, 1 - (x[j] - x[k]))",
            "sum the pairs and divide by C",
            "reduce: mean divides by N",
        ),
        mistakes=(
            "0/1 rows (multi-hot): this loss wants class indices padded with -1; "
            "for 0/1 rows use multilabel-soft-margin",
            "forgetting the -1: without it every entry of the row counts as a target",
        ),
    ),
)

COSINE_EMBEDDING = LossSpec(
    name="cosine-embedding",
    torch_class="CosineEmbeddingLoss",
    task="similarity learning on embeddings",
    summary="1 - cos for similar pairs, max(0, cos - margin) for dissimilar pairs",
    inputs=(
        InputSpec("x1", FLOAT, "embeddings (N,D)"),
        InputSpec("x2", FLOAT, "embeddings (N,D)"),
        InputSpec("targets", LABEL, f"{SIGNS} per row (N)"),
    ),
    options=(margin_option(0.0, low=-1.0, high=1.0),),
    prepare=_prepare_cosine,
    steps_table=_steps_cosine,
    example=(
        "losscli cosine-embedding sample_data/emb1.csv sample_data/emb2.csv sample_data/pair_y.csv"
    ),
    explain=Explain(
        formula=(
            "cos_i = x1_i . x2_i / (|x1_i| |x2_i|)\n"
            "loss_i = 1 - cos_i if y_i = 1 else max(0, cos_i - margin); mean = sum / N"
        ),
        procedure=(
            "cosine similarity of each pair of rows",
            "similar pairs (y = 1) lose 1 - cos; dissimilar pairs lose what exceeds the margin",
            "reduce: mean divides by N",
        ),
        mistakes=("--margin outside [-1, 1] (0 to 0.5 is usual)", "0/1 labels instead of +1/-1"),
    ),
)

MARGIN_RANKING = LossSpec(
    name="margin-ranking",
    torch_class="MarginRankingLoss",
    task="ranking",
    summary="hinge on score differences: x1 should rank above x2 when y = 1, below when y = -1",
    inputs=(
        InputSpec("x1", FLOAT, "scores, any shape"),
        InputSpec("x2", FLOAT, "scores, x1's shape"),
        InputSpec("targets", LABEL, f"{SIGNS}, x1's shape"),
    ),
    options=(margin_option(0.0),),
    prepare=_prepare_ranking,
    steps_table=_steps_ranking,
    example=(
        "losscli margin-ranking sample_data/rank1.csv sample_data/rank2.csv sample_data/signs.csv"
    ),
    explain=Explain(
        formula="loss_j = max(0, -y_j (x1_j - x2_j) + margin); mean = sum / numel",
        procedure=(
            "difference of the two scores, signed by the wanted order y",
            "loss is what falls short of the margin",
            "reduce: mean divides by the number of elements",
        ),
        mistakes=("y = 1 means x1 should be larger", "0/1 labels instead of +1/-1"),
    ),
)

TRIPLET_MARGIN = LossSpec(
    name="triplet-margin",
    torch_class="TripletMarginLoss",
    task="metric learning",
    summary="the anchor must be closer to the positive than to the negative by a margin",
    inputs=(
        InputSpec("anchor", FLOAT, "embeddings (N,D)"),
        InputSpec("positive", FLOAT, "embeddings (N,D)"),
        InputSpec("negative", FLOAT, "embeddings (N,D)"),
    ),
    options=(
        margin_option(1.0, low=0.0, open_low=True),
        OptionSpec(
            "p", 2.0, NUMBER, "Degree of the pairwise distance norm.", low=0.0, open_low=True
        ),
        OptionSpec("eps", 1e-6, NUMBER, "Added to differences before the norm.", low=0.0),
        OptionSpec("swap", False, FLAG, "Use the positive-negative distance when it is smaller."),
    ),
    prepare=_prepare_triplet,
    steps_table=_steps_triplet,
    example="losscli triplet-margin sample_data/emb1.csv sample_data/emb2.csv sample_data/emb3.csv",
    explain=Explain(
        formula=(
            "d(u, v) = ||u - v + eps||_p\n"
            "loss_i = max(0, d(a_i, p_i) - d(a_i, n_i) + margin); mean = sum / N\n"
            "--swap: d(a_i, n_i) <- min(d(a_i, n_i), d(p_i, n_i))"
        ),
        procedure=(
            "distance from anchor to positive, and from anchor to negative",
            "with --swap, use the positive-negative distance if it is smaller",
            "loss = max(0, d(a,p) - d(a,n) + margin)",
            "reduce: mean divides by N",
        ),
        mistakes=(
            "--margin must be > 0",
            "mixing up the order: inputs are anchor, positive, negative",
        ),
    ),
)

SPECS = (
    HINGE_EMBEDDING,
    MULTI_MARGIN,
    MULTILABEL_MARGIN,
    COSINE_EMBEDDING,
    MARGIN_RANKING,
    TRIPLET_MARGIN,
)
