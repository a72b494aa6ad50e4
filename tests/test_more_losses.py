"""The fifteen losses beyond the core five: each against an independent NumPy formula, each
reduction and option, each gradient (finite differences of the NumPy formula), chunking,
--steps, and each validation error."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

import losscli
from losscli import engine
from losscli.errors import LossCliError
from losscli.io import InputArray
from losscli.registry import get_spec
from losscli.validate import Context
from tests import reference as ref
from tests.conftest import SAMPLE, assert_usage_error, run_cli

RNG = np.random.default_rng(99)


@dataclass
class Case:
    loss: str
    inputs: tuple
    reference: Callable[..., Any]
    options: dict = field(default_factory=dict)
    reductions: tuple = ("mean", "sum", "none")


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

CASES = [
    Case("huber", (x, y), lambda a, b, r, o: ref.huber(a, b, o["delta"], r), {"delta": 0.7}),
    Case("smooth-l1", (x, y), lambda a, b, r, o: ref.smooth_l1(a, b, o["beta"], r), {"beta": 0.4}),
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
    Case("multilabel-margin", (x, ml_targets), lambda a, b, r, o: ref.multilabel_margin(a, b, r)),
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


def _full_options(case: Case) -> dict:
    return {**get_spec(case.loss).options, **case.options}


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


@pytest.mark.parametrize("case", CASES, ids=_case_id)
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
    steps = spec.steps(prepared.arrays, prepared.options, 5)
    assert len(steps.rows) == 5
    expected = np.asarray(_reference(case, case.inputs, "none")).reshape(-1)[:5]
    np.testing.assert_allclose([row[-1] for row in steps.rows], expected, rtol=1e-9, atol=1e-12)


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


def test_ctc_impossible_target_warns_in_the_cli(files):
    lengths = files.text("short.csv", "2\n10\n11\n")
    out = run_cli(
        "ctc",
        SAMPLE / "ctc_log_probs.npy",
        SAMPLE / "ctc_targets.csv",
        lengths,
        SAMPLE / "ctc_target_lengths.csv",
        "-f",
        "json",
    )
    assert out.exit_code == 0
    assert "needs at least 4 frames" in out.stderr and "--zero-infinity" in out.stderr
    assert '"value": null' in out.stdout or '"value": Infinity' not in out.stdout


def test_ctc_steps_show_the_forward_algorithm_value():
    problem = _ctc_problem()
    spec = get_spec("ctc")
    inputs = {n: InputArray("t", np.asarray(a)) for n, a in zip(spec.input_names, problem)}
    prepared = spec.prepare(inputs, dict(spec.options), Context())
    steps = spec.steps(prepared.arrays, prepared.options, 5)
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


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["soft-margin", "scores.csv", "bce_targets.csv"], ["shapes do not match"]),
        (["hinge-embedding", "distances.csv", "scores.csv"], ["is not +1 or -1", "row 1"]),
        (["margin-ranking", "rank1.csv", "rank2.csv", "scores.csv"], ["is not +1 or -1"]),
        (["cosine-embedding", "emb1.csv", "emb2.csv", "signs.csv"], ["(N,D) with (N)"]),
        (
            ["cosine-embedding", "emb1.csv", "emb2.csv", "pair_y.csv", "--margin", "2"],
            ["--margin 2.0", "[-1.0, 1.0]"],
        ),
        (
            ["triplet-margin", "emb1.csv", "emb2.csv", "emb3.csv", "--margin", "0"],
            ["--margin 0.0", "> 0.0"],
        ),
        (["triplet-margin", "emb1.csv", "emb2.csv", "emb3.csv", "--eps", "-1"], ["--eps -1.0"]),
        (["triplet-margin", "emb1.csv", "emb2.csv", "bce_logits.csv"], ["[8, 5]", "[10, 4]"]),
        (["multi-margin", "logits.csv", "labels.csv", "--p", "3"], ["--p 3", "1 or 2"]),
        (["multi-margin", "logits.csv", "ctc_targets.csv"], ["shapes do not match"]),
        (
            ["multi-margin", "logits.csv", "labels.csv", "--weight", "1,2"],
            ["2 entries", "5 classes"],
        ),
        (["multilabel-margin", "bce_logits.csv", "bce_probs.csv"], ["not a class index"]),
        (["multilabel-margin", "logits.csv", "ml_labels.csv"], ["[10, 5]", "[10, 4]"]),
        (["multilabel-soft-margin", "bce_logits.csv", "counts.csv"], ["shapes do not match"]),
        (["multilabel-soft-margin", "bce_logits.csv", "y_true.csv"], ["shapes do not match"]),
        (["bce-logits", "bce_logits.csv", "bce_logits.csv"], ["outside [0, 1]"]),
        (
            ["bce-logits", "bce_logits.csv", "bce_targets.csv", "--pos-weight", "1,2,3"],
            ["--pos-weight has 3 entries"],
        ),
        (["huber", "y_pred.csv", "y_true.csv", "--delta", "0"], ["--delta 0.0", "> 0.0"]),
        (["smooth-l1", "y_pred.csv", "y_true.csv", "--beta", "-1"], ["--beta -1.0"]),
        (["poisson-nll", "poisson_log_rates.csv", "y_true.csv"], ["counts (>= 0)"]),
        (["poisson-nll", "y_true.csv", "counts.csv", "--no-log-input"], ["rates (>= 0)"]),
        (["poisson-nll", "poisson_log_rates.csv", "counts.csv", "--eps", "-1"], ["--eps -1.0"]),
        (["gaussian-nll", "y_pred.csv", "y_true.csv", "y_true.csv"], ["var value", "> 0"]),
        (["gaussian-nll", "y_pred.csv", "y_true.csv", "bce_probs.csv"], ["var must have"]),
        (["gaussian-nll", "y_pred.csv", "y_true.csv", "var.csv", "--eps", "-1"], ["--eps -1.0"]),
        (["kl-div", "log_probs.csv", "logits.csv"], ["target value", "--log-target"]),
        (["kl-div", "log_probs.csv", "labels.csv"], ["shapes do not match"]),
        (
            [
                "ctc",
                "logits.csv",
                "ctc_targets.csv",
                "ctc_input_lengths.csv",
                "ctc_target_lengths.csv",
            ],
            ["input length", "one per sample"],
        ),
        (
            [
                "ctc",
                "ctc_log_probs.npy",
                "ctc_targets.csv",
                "ctc_input_lengths.csv",
                "ctc_target_lengths.csv",
                "--blank",
                "5",
            ],
            ["--blank 5", "0..4"],
        ),
        (
            [
                "ctc",
                "ctc_log_probs.npy",
                "ctc_targets.csv",
                "ctc_target_lengths.csv",
                "ctc_input_lengths.csv",
            ],
            ["target length", "not an integer in 0..4"],
        ),
        (
            ["ctc", "ctc_log_probs.npy", "ctc_targets.csv", "labels.csv", "ctc_target_lengths.csv"],
            ["input length", "3 integer(s)"],
        ),
    ],
)
def test_bad_inputs_for_each_loss_are_clear_errors(args, fragments):
    argv = [args[0]] + [str(SAMPLE / a) if a.endswith((".csv", ".npy")) else a for a in args[1:]]
    assert_usage_error(run_cli(*argv), *fragments)


def test_ctc_blank_used_as_a_label_is_refused(files):
    targets = files.text("t.csv", "1,0\n2,1\n3,4\n")
    lengths = files.text("l.csv", "2\n2\n2\n")
    out = run_cli(
        "ctc", SAMPLE / "ctc_log_probs.npy", targets, SAMPLE / "ctc_input_lengths.csv", lengths
    )
    assert_usage_error(out, "row 1 (line 1, column 2)", "other than the blank 0")


def test_ctc_concatenated_lengths_must_add_up(files):
    targets = files.text("t.csv", "1\n2\n3\n")
    out = run_cli(
        "ctc",
        SAMPLE / "ctc_log_probs.npy",
        targets,
        SAMPLE / "ctc_input_lengths.csv",
        SAMPLE / "ctc_target_lengths.csv",
    )
    assert_usage_error(out, "hold 3 labels", "add up to 9")


@pytest.mark.parametrize(
    ("args", "warning"),
    [
        (["kl-div", "log_probs.csv", "target_probs.csv"], "batchmean"),
        (
            ["kl-div", "target_probs.csv", "target_probs.csv", "-r", "batchmean"],
            "not log-probabilities",
        ),
        (["bce-logits", "bce_probs.csv", "bce_targets.csv"], "look like probabilities"),
    ],
)
def test_guidance_warnings(args, warning):
    argv = [args[0]] + [str(SAMPLE / a) if a.endswith((".csv", ".npy")) else a for a in args[1:]]
    out = run_cli(*argv, "-f", "value")
    assert out.exit_code in (0, 2), out.stderr
    assert warning in out.stderr


def test_kl_batchmean_is_only_for_kl():
    out = run_cli("mse", SAMPLE / "y_pred.csv", SAMPLE / "y_true.csv", "-r", "batchmean")
    assert out.exit_code == 2
    with pytest.raises(LossCliError, match="batchmean"):
        losscli.compute("mse", x, y, reduction="batchmean")


def test_grad_out_writes_first_input_of_multi_input_losses(tmp_path):
    out_path = tmp_path / "g.npy"
    out = run_cli(
        "triplet-margin",
        SAMPLE / "emb1.csv",
        SAMPLE / "emb2.csv",
        SAMPLE / "emb3.csv",
        "--grad-out",
        out_path,
        "-f",
        "json",
    )
    assert out.exit_code == 0, out.stderr
    import json

    data = json.loads(out.stdout)
    assert set(data["gradient"]) == {"anchor", "positive", "negative"}
    grad = np.load(out_path)
    assert grad.shape == (8, 5)
    assert np.linalg.norm(grad) == pytest.approx(data["gradient"]["anchor"]["norm"], rel=1e-5)
