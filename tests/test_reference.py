"""Every loss against an independent NumPy formula, from one table of cases.

Each case is a loss, its inputs and options, and a reference function written with NumPy
alone (``tests/reference.py``). From the table: the value for every reduction, gradients
against finite differences of the formula, chunked computation against one chunk, the steps
table against the per-element losses, and CUDA against the CPU where a GPU exists. Below the
table, properties that a formula alone does not show (scikit-learn, analytic gradients, CTC
by enumeration of alignments).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import log_loss, mean_absolute_error, mean_squared_error

import losscli
from losscli import engine
from losscli.io import InputArray
from losscli.registry import get_spec
from losscli.validate import Context
from tests import reference as ref
from tests.conftest import torch_cuda_available

RNG = np.random.default_rng(99)
REDUCTIONS = ["mean", "sum", "none"]


@dataclass
class Case:
    loss: str
    inputs: tuple
    reference: Callable[..., Any]
    options: dict = field(default_factory=dict)
    reductions: tuple = ("mean", "sum", "none")
    # torch's CTC gradient is the one through log_softmax (tested on its own below).
    finite_differences: bool = True
    # The column of the steps table that holds each sample's unreduced loss.
    steps_column: int = -1


def _signs(shape):
    return RNG.choice([-1.0, 1.0], size=shape)


def _log_softmax(shape, axis=1):
    return ref.log_softmax(RNG.normal(size=shape), axis=axis)


x = RNG.normal(size=(12, 4))
y = RNG.normal(size=(12, 4))
probs = RNG.dirichlet(np.ones(4), size=12)
binary = RNG.integers(0, 2, size=(12, 4)).astype(float)
counts = RNG.poisson(2.0, size=(12, 4)).astype(float)
counts[counts == 1] = 2  # --full's Stirling term starts at y > 1: keep finite differences off it
ml_targets = np.array([[0, 2, -1, 1], [3, -1, -1, -1], [1, 0, 3, 2], [2, 1, -1, 0]] * 3)
e1, e2, e3 = (RNG.normal(size=(9, 5)) for _ in range(3))

xc = RNG.normal(size=(12, 5)) * 2
yc = RNG.integers(0, 5, size=12)
yc_ignored = yc.copy()
yc_ignored[[1, 6]] = -100
xk, yk = RNG.normal(size=(3, 4, 5, 2)), RNG.integers(0, 4, size=(3, 5, 2))
p01 = RNG.uniform(0.05, 0.95, size=(12, 4))

CORE_CASES = [
    Case("ce", (xc, yc), lambda a, b, r, o: ref.cross_entropy(a, b, reduction=r)),
    Case(
        "ce",
        (xc, yc_ignored),
        lambda a, b, r, o: ref.cross_entropy(
            a, b, o["weight"], o["ignore_index"], o["label_smoothing"], r
        ),
        {"weight": "1,2,0.5,1.5,3", "label_smoothing": 0.2},
    ),
    Case(
        "ce",
        (xc, RNG.dirichlet(np.ones(5), size=12)),
        lambda a, b, r, o: ref.cross_entropy_probs(a, b, o["weight"], o["label_smoothing"], r),
        {"weight": "0.5,1,1.5,2,1", "label_smoothing": 0.3},
    ),
    Case("ce", (xk, yk), lambda a, b, r, o: ref.cross_entropy(a, b, reduction=r)),
    Case(
        "nll",
        (ref.log_softmax(xc), yc_ignored),
        lambda a, b, r, o: ref.nll(a, b, o["weight"], o["ignore_index"], r),
        {"weight": "1,2,3,4,5"},
    ),
    Case("mse", (x, y), lambda a, b, r, o: ref.mse(a, b, r)),
    Case("l1", (x, y), lambda a, b, r, o: ref.l1(a, b, r)),
    Case(
        "bce",
        (p01, binary),
        lambda a, b, r, o: ref.bce(a, b, o["weight"], r),
        {"weight": "0.5,1,2,1"},
    ),
]

CTC_CASE = Case(
    "ctc",
    (
        ref.log_softmax(RNG.normal(size=(4, 5, 3)), axis=2),
        np.array([[1, 2], [2, 0], [1, 1], [2, 0], [1, 0]]),
        np.array([4, 3, 4, 2, 3]),
        np.array([2, 1, 2, 1, 1]),
    ),
    lambda lp, t, il, tl, r, o: ref.ctc(lp, t, il, tl, r),
    finite_differences=False,
    steps_column=-2,
)

CASES = (
    CORE_CASES
    + [CTC_CASE]
    + [
        Case("huber", (x, y), lambda a, b, r, o: ref.huber(a, b, o["delta"], r), {"delta": 0.7}),
        Case(
            "smooth-l1", (x, y), lambda a, b, r, o: ref.smooth_l1(a, b, o["beta"], r), {"beta": 0.4}
        ),
        Case(
            "poisson-nll",
            (x, counts),
            lambda a, b, r, o: ref.poisson_nll(a, b, True, o["full"], reduction=r),
            {"full": True},
        ),
        Case(
            "poisson-nll",
            (np.abs(x) + 0.1, counts),
            lambda a, b, r, o: ref.poisson_nll(a, b, False, False, o["eps"], r),
            {"log_input": False, "eps": 1e-3},
        ),
        Case(
            "gaussian-nll",
            (x, y, RNG.uniform(0.2, 2, size=(12, 4))),
            lambda a, b, v, r, o: ref.gaussian_nll(a, b, v, o["full"], reduction=r),
            {"full": True},
        ),
        Case(
            "gaussian-nll",
            (x, y, RNG.uniform(0.2, 2, size=12)),
            lambda a, b, v, r, o: ref.gaussian_nll(a, b, v[:, None], reduction=r),
        ),
        Case(
            "bce-logits",
            (x, binary),
            lambda a, b, r, o: ref.bce_with_logits(a, b, [1, 2, 0.5, 1], [2, 1, 1, 3], r),
            {"weight": "1,2,0.5,1", "pos_weight": "2,1,1,3"},
        ),
        Case("focal", (x, binary), lambda a, b, r, o: ref.focal(a, b, reduction=r)),
        Case(
            "focal",
            (x, RNG.uniform(size=(12, 4))),
            lambda a, b, r, o: ref.focal(a, b, alpha=-1.0, gamma=0.5, reduction=r),
            {"alpha": "-1", "gamma": "0.5"},
        ),
        Case("soft-margin", (x, _signs((12, 4))), lambda a, b, r, o: ref.soft_margin(a, b, r)),
        Case(
            "multilabel-soft-margin",
            (x, binary),
            lambda a, b, r, o: ref.multilabel_soft_margin(a, b, [1, 2, 3, 4], r),
            {"weight": "1,2,3,4"},
        ),
        Case(
            "kl-div",
            (_log_softmax((12, 4)), probs),
            lambda a, b, r, o: ref.kl_div(a, b, False, r),
            {},
            ("mean", "sum", "none", "batchmean"),
        ),
        Case(
            "kl-div",
            (_log_softmax((12, 4)), np.log(probs)),
            lambda a, b, r, o: ref.kl_div(a, b, True, r),
            {"log_target": True},
            ("batchmean", "none"),
        ),
        Case(
            "hinge-embedding",
            (np.abs(x), _signs((12, 4))),
            lambda a, b, r, o: ref.hinge_embedding(a, b, o["margin"], r),
            {"margin": 1.5},
        ),
        Case(
            "multi-margin",
            (x, RNG.integers(0, 4, size=12)),
            lambda a, b, r, o: ref.multi_margin(a, b, 2, 0.5, [1, 2, 1, 3], r),
            {"p": 2, "margin": 0.5, "weight": "1,2,1,3"},
        ),
        Case(
            "multi-margin",
            (x, RNG.integers(0, 4, size=12)),
            lambda a, b, r, o: ref.multi_margin(a, b, reduction=r),
        ),
        Case(
            "multilabel-margin", (x, ml_targets), lambda a, b, r, o: ref.multilabel_margin(a, b, r)
        ),
        Case(
            "cosine-embedding",
            (e1, e2, _signs(9)),
            lambda a, b, c, r, o: ref.cosine_embedding(a, b, c, o["margin"], r),
            {"margin": 0.2},
        ),
        Case(
            "margin-ranking",
            (x[:, 0], y[:, 0], _signs(12)),
            lambda a, b, c, r, o: ref.margin_ranking(a, b, c, o["margin"], r),
            {"margin": 0.3},
        ),
        Case(
            "triplet-margin",
            (e1, e2, e3),
            lambda a, b, c, r, o: ref.triplet_margin(a, b, c, o["margin"], o["p"], reduction=r),
            {"margin": 0.5, "p": 1.5},
        ),
        Case(
            "triplet-margin",
            (e1, e2, e3),
            lambda a, b, c, r, o: ref.triplet_margin(a, b, c, swap=True, reduction=r),
            {"swap": True},
        ),
    ]
)


def _full_options(case: Case) -> dict:
    return get_spec(case.loss).convert_options(case.options)


def _reference(case: Case, inputs, reduction):
    return case.reference(*inputs, reduction, _full_options(case))


def _case_id(case: Case) -> str:
    return case.loss + ("-" + "-".join(sorted(case.options)) if case.options else "")


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_loss_matches_numpy_formula_for_each_reduction(case):
    for reduction in case.reductions:
        result = losscli.compute(
            case.loss, *case.inputs, reduction=reduction, dtype="float64", **case.options
        )
        np.testing.assert_allclose(
            np.asarray(result.value),
            _reference(case, case.inputs, reduction),
            rtol=1e-7,
            atol=1e-12,
            err_msg=reduction,
        )


@pytest.mark.parametrize("case", [c for c in CASES if c.finite_differences], ids=_case_id)
def test_gradients_match_finite_differences_of_the_numpy_formula(case):
    spec = get_spec(case.loss)
    reduction = "batchmean" if case.loss == "kl-div" else "mean"
    result = losscli.compute(
        case.loss, *case.inputs, reduction=reduction, dtype="float64", **case.options
    )
    assert set(result.gradients) == set(spec.float_inputs)
    step = 1e-6
    for position, input_spec in enumerate(spec.inputs):
        if not input_spec.differentiable:
            continue
        base = np.asarray(case.inputs[position], dtype=float)
        numeric = np.zeros_like(base)
        for index in np.ndindex(base.shape):
            shifted = []
            for sign in (1, -1):
                moved = base.copy()
                moved[index] += sign * step
                inputs = list(case.inputs)
                inputs[position] = moved
                shifted.append(_reference(case, inputs, reduction))
            numeric[index] = (shifted[0] - shifted[1]) / (2 * step)
        np.testing.assert_allclose(
            result.gradients[input_spec.name],
            numeric,
            rtol=1e-4,
            atol=1e-7,
            err_msg=input_spec.name,
        )


@pytest.mark.parametrize("case", [c for c in CASES if get_spec(c.loss).chunkable], ids=_case_id)
def test_chunked_equals_one_chunk(case):
    spec = get_spec(case.loss)
    for reduction in case.reductions:
        inputs = {n: InputArray("t", np.asarray(a)) for n, a in zip(spec.input_names, case.inputs)}
        prepared = spec.prepare(inputs, _full_options(case), Context(reduction))
        whole = engine.run(spec, prepared, reduction=reduction, dtype="float64")
        chunked = engine.run(spec, prepared, reduction=reduction, dtype="float64", chunk_elements=7)
        np.testing.assert_allclose(np.asarray(chunked.value), np.asarray(whole.value))
        for name, grad in whole.gradients.items():
            np.testing.assert_allclose(chunked.gradients[name], grad, atol=1e-14)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_steps_end_in_each_elements_or_samples_loss(case):
    spec = get_spec(case.loss)
    inputs = {n: InputArray("t", np.asarray(a)) for n, a in zip(spec.input_names, case.inputs)}
    prepared = spec.prepare(inputs, _full_options(case), Context("sum"))
    steps = spec.steps_table(prepared.arrays, prepared.options, 5)
    assert len(steps.rows) == 5
    expected = np.asarray(_reference(case, case.inputs, "none")).reshape(-1)[:5]
    got = [row[case.steps_column] for row in steps.rows]
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.cuda
@pytest.mark.skipif(not torch_cuda_available(), reason="no CUDA device")
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_cuda_equals_cpu(case):
    cpu = losscli.compute(case.loss, *case.inputs, dtype="float64", **case.options)
    gpu = losscli.compute(case.loss, *case.inputs, dtype="float64", device="cuda", **case.options)
    assert gpu.device.startswith("cuda")
    np.testing.assert_allclose(np.asarray(gpu.value), np.asarray(cpu.value), rtol=1e-10)
    for name, grad in cpu.gradients.items():
        np.testing.assert_allclose(gpu.gradients[name], grad, rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------ beyond the formulas


def test_ce_matches_sklearn_log_loss(classes):
    x, y = classes
    probs = np.exp(ref.log_softmax(x))
    expected = log_loss(y, probs, labels=range(6))
    assert losscli.compute("ce", x, y, dtype="float64").value == pytest.approx(expected, rel=1e-9)


def test_ce_gradient_is_softmax_minus_one_hot_over_n(classes):
    x, y = classes
    result = losscli.compute("ce", x, y, dtype="float64")
    np.testing.assert_allclose(result.gradients["predictions"], ref.cross_entropy_grad(x, y))
    summary = result.to_dict()["gradient"]["predictions"]
    expected = ref.cross_entropy_grad(x, y)
    assert summary["shape"] == [32, 6]
    assert summary["norm"] == pytest.approx(np.linalg.norm(expected))
    assert summary["min"] == pytest.approx(expected.min())
    assert summary["max"] == pytest.approx(expected.max())
    assert summary["mean"] == pytest.approx(0.0, abs=1e-12)


def test_ce_sum_gradient_is_n_times_mean_gradient(classes):
    x, y = classes
    mean = losscli.compute("ce", x, y, dtype="float64").gradients["predictions"]
    total = losscli.compute("ce", x, y, reduction="sum", dtype="float64").gradients["predictions"]
    none = losscli.compute("ce", x, y, reduction="none", dtype="float64").gradients["predictions"]
    np.testing.assert_allclose(total, mean * len(x))
    np.testing.assert_allclose(none, total)


def test_ce_ignored_rows_get_no_gradient(classes):
    x, y = classes
    y = y.copy()
    y[:4] = -100
    grad = losscli.compute("ce", x, y).gradients["predictions"]
    assert np.all(grad[:4] == 0)
    assert np.abs(grad[4:]).sum() > 0


def test_ce_weight_from_file_equals_weight_list(classes, files):
    x, y = classes
    weight = [1, 2, 3, 4, 5, 6]
    path = files.csv("weights.csv", weight)
    a = losscli.compute("ce", x, y, weight=str(path)).value
    b = losscli.compute("ce", x, y, weight="1,2,3,4,5,6").value
    c = ref.cross_entropy(x, y, weight)
    assert a == b
    assert a == pytest.approx(c, rel=1e-6)


@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_ce_probability_targets(classes, rng, smoothing):
    x, _ = classes
    p = rng.dirichlet(np.ones(6), size=len(x))
    weight = np.linspace(0.5, 2.0, 6)
    result = losscli.compute("ce", x, p, weight=weight, label_smoothing=smoothing, dtype="float64")
    assert result.targets_kind == "class probabilities"
    assert result.value == pytest.approx(ref.cross_entropy_probs(x, p, weight, smoothing))
    smoothed = (p * (1 - smoothing) + smoothing / 6) * weight
    softmax = np.exp(ref.log_softmax(x))
    expected = (softmax * smoothed.sum(1, keepdims=True) - smoothed) / len(x)
    np.testing.assert_allclose(result.gradients["predictions"], expected)


def test_ce_integral_float_labels_and_names(classes):
    x, y = classes
    as_float = losscli.compute("ce", x, y.astype(float)).value
    names = np.array(["abcdef"[i] for i in y])
    as_names = losscli.compute("ce", x, names, classes=list("abcdef")).value
    assert as_float == as_names == losscli.compute("ce", x, y).value


def test_nll_of_log_softmax_equals_ce(classes):
    x, y = classes
    ce = losscli.compute("ce", x, y, dtype="float64")
    nll = losscli.compute("nll", ref.log_softmax(x), y, dtype="float64")
    assert nll.value == pytest.approx(ce.value)


def test_nll_gradient_is_minus_one_hot_over_n(classes):
    x, y = classes
    grad = losscli.compute("nll", ref.log_softmax(x), y, dtype="float64").gradients["predictions"]
    np.testing.assert_allclose(grad, -np.eye(6)[y] / len(y))


def test_mse_and_l1_match_sklearn(rng):
    x, y = rng.normal(size=(50, 2)), rng.normal(size=(50, 2))
    assert losscli.compute("mse", x, y, dtype="float64").value == pytest.approx(
        mean_squared_error(y, x)
    )
    assert losscli.compute("mae", x, y, dtype="float64").value == pytest.approx(
        mean_absolute_error(y, x)
    )


def test_mse_gradients_are_two_diff_over_n_for_both_inputs(rng):
    x, y = rng.normal(size=(10, 4)), rng.normal(size=(10, 4))
    result = losscli.compute("mse", x, y, dtype="float64")
    np.testing.assert_allclose(result.gradients["predictions"], 2 * (x - y) / x.size)
    np.testing.assert_allclose(result.gradients["targets"], -2 * (x - y) / x.size)


def test_l1_gradient_is_sign_over_n(rng):
    x, y = rng.normal(size=(10, 4)), rng.normal(size=(10, 4))
    grad = losscli.compute("l1", x, y, dtype="float64").gradients["predictions"]
    np.testing.assert_allclose(grad, np.sign(x - y) / x.size)


def test_focal_with_gamma_0_and_no_alpha_is_bce_logits(rng):
    logits = rng.normal(size=(30, 3)) * 3
    targets = rng.integers(0, 2, size=(30, 3)).astype(float)
    focal = losscli.compute("focal", logits, targets, gamma=0.0, alpha=-1.0, dtype="float64")
    plain = losscli.compute("bce-logits", logits, targets, dtype="float64")
    assert focal.value == pytest.approx(plain.value, rel=1e-12)
    np.testing.assert_allclose(
        focal.gradients["predictions"], plain.gradients["predictions"], rtol=1e-10
    )


def test_bce_matches_sklearn_log_loss_and_gradient(rng):
    p = rng.uniform(0.05, 0.95, size=40)
    y = rng.integers(0, 2, size=40).astype(float)
    result = losscli.compute("bce", p, y, dtype="float64")
    assert result.value == pytest.approx(log_loss(y, p))
    np.testing.assert_allclose(result.gradients["predictions"], (p - y) / (p * (1 - p)) / 40)


def test_bce_per_row_weight_for_1d_inputs(rng):
    p = rng.uniform(0.05, 0.95, size=6)
    y = rng.integers(0, 2, size=6).astype(float)
    w = np.arange(1, 7, dtype=float)
    result = losscli.compute("bce", p, y, weight=w, dtype="float64")
    assert result.value == pytest.approx(ref.bce(p, y, w))


def test_bce_clamps_log_at_minus_100_and_warns():
    result = losscli.compute("bce", [0.0, 1.0], [1.0, 0.0], dtype="float64")
    assert result.value == pytest.approx(100.0)
    assert any("exactly 0 or 1" in w for w in result.warnings)


# ------------------------------------------------------------------ CTC


def _ctc_problem():
    frames, classes = 4, 3
    log_probs = ref.log_softmax(RNG.normal(size=(frames, 2, classes)), axis=2)
    targets = np.array([[1, 2], [2, 0]])
    input_lengths = np.array([4, 3])
    target_lengths = np.array([2, 1])
    return log_probs, targets, input_lengths, target_lengths


def _ctc_reference(log_probs, targets, input_lengths, target_lengths):
    return np.array(
        [
            ref.ctc_by_enumeration(
                log_probs[: input_lengths[i], i], targets[i, : target_lengths[i]]
            )
            for i in range(len(targets))
        ]
    )


def test_ctc_matches_alignment_enumeration_each_reduction():
    problem = _ctc_problem()
    per = _ctc_reference(*problem)
    none = losscli.compute("ctc", *problem, reduction="none", dtype="float64")
    np.testing.assert_allclose(none.value, per, rtol=1e-9)
    total = losscli.compute("ctc", *problem, reduction="sum", dtype="float64")
    assert total.value == pytest.approx(per.sum())
    mean = losscli.compute("ctc", *problem, dtype="float64")
    assert mean.value == pytest.approx(np.mean(per / problem[3]))


def test_ctc_concatenated_targets_equal_padded():
    log_probs, targets, input_lengths, target_lengths = _ctc_problem()
    flat = np.concatenate([targets[i, :n] for i, n in enumerate(target_lengths)])
    a = losscli.compute("ctc", log_probs, targets, input_lengths, target_lengths, dtype="float64")
    b = losscli.compute("ctc", log_probs, flat, input_lengths, target_lengths, dtype="float64")
    assert a.value == pytest.approx(b.value)


def test_ctc_gradient_is_the_gradient_through_log_softmax():
    """torch's CTC gradient w.r.t. log_probs assumes they come from log_softmax: it equals the
    derivative w.r.t. the logits z with log_probs = log_softmax(z) (softmax - occupancy)."""
    log_probs, *rest = _ctc_problem()
    result = losscli.compute("ctc", log_probs, *rest, reduction="sum", dtype="float64")
    logits = log_probs.copy()
    numeric = np.zeros_like(logits)
    for index in np.ndindex(logits.shape):
        plus, minus = logits.copy(), logits.copy()
        plus[index] += 1e-6
        minus[index] -= 1e-6
        numeric[index] = (
            _ctc_reference(ref.log_softmax(plus, axis=2), *rest).sum()
            - _ctc_reference(ref.log_softmax(minus, axis=2), *rest).sum()
        ) / 2e-6
    np.testing.assert_allclose(result.gradients["log_probs"], numeric, rtol=1e-4, atol=1e-7)


def test_ctc_steps_show_the_forward_algorithm_value():
    problem = _ctc_problem()
    spec = get_spec("ctc")
    inputs = {n: InputArray("t", np.asarray(a)) for n, a in zip(spec.input_names, problem)}
    prepared = spec.prepare(inputs, spec.defaults, Context())
    steps = spec.steps_table(prepared.arrays, prepared.options, 5)
    np.testing.assert_allclose([row[-2] for row in steps.rows], _ctc_reference(*problem))


def test_ctc_impossible_target_warns_and_zero_infinity_zeroes_it():
    log_probs, targets, _, target_lengths = _ctc_problem()
    short = np.array([1, 3])
    result = losscli.compute("ctc", log_probs, targets, short, target_lengths, reduction="none")
    assert np.isinf(result.value[0])
    assert any("infinite" in w for w in result.warnings)
    zeroed = losscli.compute(
        "ctc", log_probs, targets, short, target_lengths, reduction="none", zero_infinity=True
    )
    assert zeroed.value[0] == 0.0


# (predictions' shape, var's shape) that torch's GaussianNLLLoss accepts and losscli computes.
GAUSSIAN_VAR_COMPUTED = [
    ((12, 3), (12, 3)),
    ((12, 3), (12,)),
    ((12, 3), (12, 1)),
    ((12,), (12,)),
    ((1,), (1,)),
    ((), ()),
    ((6, 2, 3), (6, 2)),
    ((6, 2, 3), (6, 2, 1)),
]
# Shapes refused with exit 2: one var for every row of 1-D predictions (torch broadcasts
# it; see the README), and shapes torch refuses or broadcasts over another axis.
GAUSSIAN_VAR_REFUSED = [
    ((12,), ()),
    ((12,), (1,)),
    ((12, 3), ()),
    ((12, 3), (1,)),
    ((12, 3), (3,)),
    ((12, 3), (1, 3)),
    ((12, 3), (12, 3, 1)),
    ((12,), (12, 1)),
    ((6, 2, 3), (6, 1, 3)),
]


def _gaussian_inputs(shape, var_shape):
    rng = np.random.default_rng(sum(shape) + 7 * len(var_shape))
    x, y = rng.normal(size=shape), rng.normal(size=shape)
    var = rng.uniform(0.2, 2.0, size=var_shape)
    if var.size > 1:
        var.flat[0] = 1e-8  # clamped at eps (torch clamps without autograd: its gradient flows)
    return x, y, var


def _gaussian_grads(x, y, var, full, eps, reduction):
    """NumPy's gradients of the reduced loss w.r.t. x, y and var (var summed back over the
    axes torch broadcasts it along; torch's clamp at eps is outside autograd, so a clamped
    var gets the gradient at eps)."""
    v = np.asarray(var, float)
    if v.shape != x.shape and v.shape == x.shape[:-1]:
        v = v[..., None]
    wide = np.broadcast_to(v, x.shape)
    clamped = np.maximum(wide, eps)
    scale = 1.0 / x.size if reduction == "mean" else 1.0
    dx = (x - y) / clamped * scale
    dvar = 0.5 * (1 / clamped - (x - y) ** 2 / clamped**2) * scale
    axes = tuple(i for i, (a, b) in enumerate(zip(x.shape, v.shape)) if a != b)
    dvar = dvar.sum(axis=axes, keepdims=True).reshape(np.shape(var))
    return dx, -dx, dvar


@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("shape,var_shape", GAUSSIAN_VAR_COMPUTED)
def test_gaussian_nll_var_shapes_match_torch_and_numpy(shape, var_shape, reduction, full):
    import torch

    x, y, var = _gaussian_inputs(shape, var_shape)
    got = losscli.compute("gaussian-nll", x, y, var, reduction=reduction, full=full,
                          dtype="float64")  # fmt: skip
    expected = ref.gaussian_nll(
        x, y, var if var.shape in (x.shape, ()) or var.ndim == x.ndim else var[..., None],
        full, reduction=reduction,
    )  # fmt: skip
    assert got.value == pytest.approx(expected, rel=1e-12)
    tensors = [torch.tensor(a, requires_grad=True) for a in (x, y, var)]
    torch_value = torch.nn.functional.gaussian_nll_loss(*tensors, full=full, reduction=reduction)
    torch_value.backward()
    assert got.value == pytest.approx(torch_value.item(), rel=1e-12)
    for name, numpy_grad, tensor in zip(("predictions", "targets", "var"),
                                        _gaussian_grads(x, y, var, full, 1e-6, reduction),
                                        tensors):  # fmt: skip
        assert got.gradients[name].shape == np.shape(numpy_grad)
        np.testing.assert_allclose(got.gradients[name], numpy_grad, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(got.gradients[name], tensor.grad.numpy(), rtol=1e-10)


@pytest.mark.parametrize("shape,var_shape", GAUSSIAN_VAR_COMPUTED)
def test_gaussian_nll_var_shapes_in_every_view_and_block_size(tmp_path, shape, var_shape):
    import json

    from tests.conftest import run_cli

    x, y, var = _gaussian_inputs(shape, var_shape)
    paths = []
    for name, array in (("x", x), ("y", y), ("v", var)):
        np.save(tmp_path / f"{name}.npy", array)
        paths.append(tmp_path / f"{name}.npy")
    wide = var if var.shape in (x.shape, ()) or var.ndim == x.ndim else var[..., None]
    per = ref.gaussian_nll(x, y, wide, True, reduction="none")
    for extra in ([], ["--block-rows", "5"], ["--top", "3", "--hist", "--per-sample"],
                  ["--steps"], ["-r", "none"], ["-r", "sum", "--block-rows", "1"]):  # fmt: skip
        out = run_cli("gaussian-nll", *paths, "--full", "--dtype", "float64", "-f", "json", *extra)
        assert out.exit_code == 0, (extra, out.stderr)
        got = json.loads(out.stdout)
        if "none" in extra:
            np.testing.assert_allclose(np.reshape(got["value"], -1), per.reshape(-1), rtol=1e-12)
        elif "sum" in extra:
            assert got["value"] == pytest.approx(per.sum(), rel=1e-12)
        else:
            assert got["value"] == pytest.approx(per.mean(), rel=1e-12)
        if "--top" in extra and per.ndim:
            rows = per.reshape(len(per), -1).sum(axis=1)
            assert got["top"][0]["loss"] == pytest.approx(rows.max(), rel=1e-12)


@pytest.mark.parametrize("shape,var_shape", GAUSSIAN_VAR_REFUSED)
def test_gaussian_nll_var_shapes_it_cannot_compute_are_refused(tmp_path, shape, var_shape):
    from tests.conftest import assert_usage_error, run_cli

    x, y, var = _gaussian_inputs(shape, var_shape)
    paths = []
    for name, array in (("x", x), ("y", y), ("v", var)):
        np.save(tmp_path / f"{name}.npy", array)
        paths.append(tmp_path / f"{name}.npy")
    for extra in ([], ["-r", "sum"], ["-r", "none", "--full"], ["--block-rows", "5"],
                  ["--top", "3", "--hist", "--per-sample"], ["--steps"]):  # fmt: skip
        out = run_cli("gaussian-nll", *paths, *extra)
        assert_usage_error(out, "var (", str(list(var_shape)))
