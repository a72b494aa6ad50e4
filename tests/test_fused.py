"""Every fused kernel against autograd on the loss's own forward (torch.nn), and against the
independent NumPy formulas of tests/reference.py: every option, dtype and shape class.

The bound tested: each element of the loss and of each gradient is within
32 eps (1 + |autograd's| + the size of the terms it is made of) of autograd's, eps being the
dtype's machine epsilon (1.2e-7 for float32, 2.2e-16 for float64): the two compute the same
formula in a different order, and a small result of large terms (a confident wrong logit of
60 times a soft target) keeps the rounding of those terms.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from losscli import kernels
from losscli.registry import all_specs, get_spec
from tests import reference as ref

FUSED = [name for name, spec in all_specs().items() if spec.fused is not None]
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def test_the_losses_people_run_on_big_files_have_kernels():
    assert set(FUSED) >= {"ce", "nll", "bce", "bce-logits", "mse", "l1", "smooth-l1", "huber"}


def _autograd(spec, tensors: dict, options: dict, wanted: set):
    leaves = {n: t.detach().clone().requires_grad_(n in wanted) for n, t in tensors.items()}
    elements = spec.unreduced(torch, options)(*(leaves[n] for n in spec.input_names))
    if wanted:
        elements.sum().backward()
    return elements.detach(), {n: leaves[n].grad for n in wanted}


def _close(fused, reference, dtype, terms=None) -> None:
    eps = torch.finfo(dtype).eps
    fused, reference = fused.double(), reference.double()
    bound = 32 * eps * (1 + reference.abs() + (0 if terms is None else terms.double()))
    same_infinity = fused.isinf() & (fused == reference)
    difference = torch.where(same_infinity, 0.0, (fused - reference).abs())
    assert bool((difference <= bound).all()), float((difference - bound).max())


def _check(name: str, tensors: dict, options: dict, dtype, terms=None) -> None:
    spec = get_spec(name)
    wanted = {
        i.name for i in spec.inputs if i.differentiable and tensors[i.name].is_floating_point()
    }
    tensors = {n: t.to(dtype) if t.is_floating_point() else t for n, t in tensors.items()}
    options = {k: v.to(dtype) if isinstance(v, torch.Tensor) else v for k, v in options.items()}
    reference, reference_grads = _autograd(spec, tensors, options, wanted)
    # Whole, and in pieces of 5 elements (crossing rows) with the gradient of a mean of a
    # million rows (scale): the gradient divided by the scale is held to the same bound.
    for piece, scale in ((kernels.PIECE_ELEMENTS, 1.0), (5, 3.0 / 1_000_000)):
        kept, kernels.PIECE_ELEMENTS = kernels.PIECE_ELEMENTS, piece
        try:
            done = spec.fused(torch, dict(tensors), options, wanted, scale)
        finally:
            kernels.PIECE_ELEMENTS = kept
        assert done is not None
        elements, grads = done
        assert elements.shape == reference.shape and elements.dtype == reference.dtype
        _close(elements, reference, dtype, terms)
        for n in wanted:
            assert grads[n].shape == tensors[n].shape and grads[n].dtype == tensors[n].dtype
            _close(grads[n] / scale, reference_grads[n], dtype, terms)


shapes = st.sampled_from([(1, 2), (7, 3), (16, 10), (5, 4, 3), (3, 5, 2, 2)])
dtypes = st.sampled_from(list(DTYPES))


@settings(max_examples=60, deadline=None)
@given(
    shape=shapes,
    dtype=dtypes,
    seed=st.integers(0, 2**32 - 1),
    weighted=st.booleans(),
    smoothing=st.sampled_from([0.0, 0.1, 1.0]),
    ignored=st.booleans(),
    probabilities=st.booleans(),
    scale=st.sampled_from([0.1, 3.0, 40.0]),
)
def test_ce_kernel_equals_autograd(
    shape, dtype, seed, weighted, smoothing, ignored, probabilities, scale
):
    rng = np.random.default_rng(seed)
    classes = shape[1]
    x = torch.from_numpy(rng.normal(size=shape) * scale)
    target_shape = (shape[0], *shape[2:])
    if probabilities:
        t = rng.dirichlet(np.ones(classes), size=target_shape)
        y = torch.from_numpy(np.moveaxis(t, -1, 1))
    else:
        labels = rng.integers(0, classes, size=target_shape)
        if ignored:
            labels.reshape(-1)[::3] = -100
        y = torch.from_numpy(labels)
    options = {
        "weight": torch.from_numpy(rng.uniform(0.1, 3, classes)) if weighted else None,
        "ignore_index": -100,
        "label_smoothing": smoothing,
    }
    _check("ce", {"predictions": x, "targets": y}, options, DTYPES[dtype])


@settings(max_examples=40, deadline=None)
@given(shape=shapes, dtype=dtypes, seed=st.integers(0, 2**32 - 1), weighted=st.booleans())
def test_nll_kernel_equals_autograd(shape, dtype, seed, weighted):
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(ref.log_softmax(rng.normal(size=shape), axis=1))
    labels = rng.integers(0, shape[1], size=(shape[0], *shape[2:]))
    labels.reshape(-1)[::4] = 7 if shape[1] > 7 else -100
    options = {
        "weight": torch.from_numpy(rng.uniform(0.1, 3, shape[1])) if weighted else None,
        "ignore_index": 7 if shape[1] > 7 else -100,
    }
    _check("nll", {"predictions": x, "targets": torch.from_numpy(labels)}, options, DTYPES[dtype])


@settings(max_examples=60, deadline=None)
@given(
    shape=shapes,
    dtype=dtypes,
    seed=st.integers(0, 2**32 - 1),
    weighted=st.sampled_from(["none", "column", "element"]),
    pos_weighted=st.booleans(),
    soft=st.booleans(),
    scale=st.sampled_from([0.5, 5.0, 60.0]),
)
def test_bce_logits_kernel_equals_autograd(shape, dtype, seed, weighted, pos_weighted, soft, scale):
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.normal(size=shape) * scale)
    y = rng.uniform(size=shape) if soft else rng.integers(0, 2, size=shape).astype(float)
    weight = {
        "none": None,
        "column": rng.uniform(0.1, 2, shape[-1]),
        "element": rng.uniform(0.1, 2, shape),
    }[weighted]
    options = {
        "weight": None if weight is None else torch.from_numpy(weight),
        "pos_weight": torch.from_numpy(rng.uniform(0.1, 4, shape[-1])) if pos_weighted else None,
    }
    # The loss sums terms of the size of |x| (1 + pos_weight) weight.
    size = (1 + (1 if options["pos_weight"] is None else options["pos_weight"])) * x.abs()
    terms = size if options["weight"] is None else size * options["weight"]
    tensors = {"predictions": x, "targets": torch.from_numpy(y)}
    _check("bce-logits", tensors, options, DTYPES[dtype], terms)


@settings(max_examples=40, deadline=None)
@given(
    shape=shapes,
    dtype=dtypes,
    seed=st.integers(0, 2**32 - 1),
    weighted=st.booleans(),
    edges=st.booleans(),
)
def test_bce_kernel_equals_autograd(shape, dtype, seed, weighted, edges):
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.001, 0.999, size=shape)
    if edges:  # exactly 0 and 1: logs clamped at -100, gradients bounded by 1e-12
        p.reshape(-1)[::5] = 0.0
        p.reshape(-1)[1::5] = 1.0
    y = rng.integers(0, 2, size=shape).astype(float)
    options = {"weight": torch.from_numpy(rng.uniform(0.1, 2, shape[-1])) if weighted else None}
    _check("bce", {"predictions": torch.from_numpy(p), "targets": torch.from_numpy(y)}, options,
           DTYPES[dtype])  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(["mse", "l1", "huber", "smooth-l1"]),
    shape=shapes,
    dtype=dtypes,
    seed=st.integers(0, 2**32 - 1),
    width=st.sampled_from([0.0, 0.5, 1.0, 3.0]),
    ties=st.booleans(),
)
def test_difference_kernels_equal_autograd(name, shape, dtype, seed, width, ties):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape) * 2
    y = rng.normal(size=shape) * 2
    if ties:  # d = 0 and |d| exactly at the threshold: where the slopes change
        y.reshape(-1)[::3] = x.reshape(-1)[::3]
        y.reshape(-1)[1::3] = x.reshape(-1)[1::3] - width
    options = {"huber": {"delta": width or 1.0}, "smooth-l1": {"beta": width}}.get(name, {})
    tensors = {"predictions": torch.from_numpy(x), "targets": torch.from_numpy(y)}
    _check(name, tensors, options, DTYPES[dtype])


@pytest.mark.parametrize("name", FUSED)
def test_a_kernel_equals_the_numpy_formula(name, rng=np.random.default_rng(5)):
    """The value of each kernel against tests/reference.py, in float64."""
    x = rng.normal(size=(9, 4))
    labels = rng.integers(0, 4, size=9)
    binary = rng.integers(0, 2, size=(9, 4)).astype(float)
    y = rng.normal(size=(9, 4))
    cases = {
        "ce": ({"predictions": x, "targets": labels}, {"ignore_index": -100},
               lambda: ref.cross_entropy(x, labels, reduction="none")),
        "nll": ({"predictions": ref.log_softmax(x, axis=1), "targets": labels},
                {"ignore_index": -100},
                lambda: ref.nll(ref.log_softmax(x, axis=1), labels, reduction="none")),
        "bce": ({"predictions": ref.sigmoid(x), "targets": binary}, {},
                lambda: ref.bce(ref.sigmoid(x), binary, reduction="none")),
        "bce-logits": ({"predictions": x, "targets": binary}, {},
                       lambda: ref.bce_with_logits(x, binary, reduction="none")),
        "mse": ({"predictions": x, "targets": y}, {}, lambda: (x - y) ** 2),
        "l1": ({"predictions": x, "targets": y}, {}, lambda: np.abs(x - y)),
        "huber": ({"predictions": x, "targets": y}, {"delta": 0.7},
                  lambda: ref.huber(x, y, 0.7, reduction="none")),
        "smooth-l1": ({"predictions": x, "targets": y}, {"beta": 0.7},
                      lambda: ref.smooth_l1(x, y, 0.7, reduction="none")),
    }  # fmt: skip
    arrays, options, expected = cases[name]
    spec = get_spec(name)
    tensors = {n: torch.from_numpy(np.asarray(a)) for n, a in arrays.items()}
    elements, _ = spec.fused(torch, tensors, options, set())
    np.testing.assert_allclose(elements.numpy(), expected(), rtol=1e-12, atol=1e-12)


CUDA_CASES = {
    "ce": lambda g: (torch.randn(4000, 7, generator=g) * 4,
                     torch.randint(0, 7, (4000,), generator=g),
                     {"weight": None, "ignore_index": -100, "label_smoothing": 0.1}),
    "nll": lambda g: (torch.log_softmax(torch.randn(4000, 7, generator=g), 1),
                      torch.randint(0, 7, (4000,), generator=g),
                      {"weight": None, "ignore_index": -100}),
    "bce-logits": lambda g: (torch.randn(4000, 7, generator=g) * 4,
                             torch.rand(4000, 7, generator=g),
                             {"weight": None, "pos_weight": torch.linspace(0.5, 3, 7)}),
    "bce": lambda g: (torch.rand(4000, 7, generator=g) * 0.98 + 0.01,
                      torch.rand(4000, 7, generator=g), {"weight": None}),
    "mse": lambda g: (torch.randn(4000, 7, generator=g), torch.randn(4000, 7, generator=g), {}),
    "l1": lambda g: (torch.randn(4000, 7, generator=g), torch.randn(4000, 7, generator=g), {}),
    "huber": lambda g: (torch.randn(4000, 7, generator=g), torch.randn(4000, 7, generator=g),
                        {"delta": 0.5}),
    "smooth-l1": lambda g: (torch.randn(4000, 7, generator=g), torch.randn(4000, 7, generator=g),
                            {"beta": 0.5}),
}  # fmt: skip


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", FUSED)
@pytest.mark.parametrize("dtype", list(DTYPES))
def test_a_kernel_on_cuda_equals_autograd_on_cuda(name, dtype):
    """The same kernel on the GPU (one piece), against autograd there, to the same bound."""
    x, y, options = CUDA_CASES[name](torch.Generator().manual_seed(3))
    kind = DTYPES[dtype]
    cuda = {n: t.to("cuda", kind if t.is_floating_point() else t.dtype)
            for n, t in {"predictions": x, "targets": y}.items()}  # fmt: skip
    options = {
        k: v.to("cuda", kind) if isinstance(v, torch.Tensor) else v for k, v in options.items()
    }
    spec = get_spec(name)
    with torch.no_grad():
        elements, grads = spec.fused(torch, dict(cuda), options, {"predictions"}, 0.25)
    reference, reference_grads = _autograd(spec, cuda, options, {"predictions"})
    assert elements.device.type == "cuda" and grads["predictions"].device.type == "cuda"
    _close(elements.cpu(), reference.cpu(), kind, cuda["predictions"].abs().cpu() * 4)
    _close((grads["predictions"] / 0.25).cpu(), reference_grads["predictions"].cpu(), kind,
           cuda["predictions"].abs().cpu() * 4)  # fmt: skip


BLOCK_CASES = {
    **CUDA_CASES,
    "bce-logits": lambda g: (torch.randn(4000, 7, generator=g) * 4,
                             (torch.rand(4000, 7, generator=g) < 0.5).double(),
                             {"weight": None, "pos_weight": None}),
    "bce-logits-weighted": CUDA_CASES["bce-logits"],
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BLOCK_CASES))
@pytest.mark.parametrize("dtype", list(DTYPES))
def test_a_kernel_gives_the_same_bits_in_any_blocks(case, dtype):
    """A value or gradient must not depend on --block-rows or on the pieces a kernel works
    in. Vectorised ops such as softplus and sigmoid compute the elements that end a block
    another way than the ones before (the same number to an ulp, not the same bits): a
    kernel uses only ops whose every element is computed alike (exp, log1p, division)."""
    spec = get_spec(case.removesuffix("-weighted"))
    x, y, options = BLOCK_CASES[case](torch.Generator().manual_seed(11))
    kind = DTYPES[dtype]
    x = x.to(kind)
    y = y.to(kind) if y.is_floating_point() else y
    options = {k: v.to(kind) if isinstance(v, torch.Tensor) else v for k, v in options.items()}
    wanted = {"predictions"} | ({"targets"} if y.is_floating_point() else set())
    whole, grads = spec.fused(torch, {"predictions": x, "targets": y}, options, wanted, 0.25)
    for rows, piece in ((1000, kernels.PIECE_ELEMENTS), (777, 5), (4097, 1001), (13, 64)):
        kept, kernels.PIECE_ELEMENTS = kernels.PIECE_ELEMENTS, piece
        try:
            parts = [
                spec.fused(torch, {"predictions": x[i : i + rows], "targets": y[i : i + rows]},
                           options, wanted, 0.25)
                for i in range(0, len(x), rows)
            ]  # fmt: skip
        finally:
            kernels.PIECE_ELEMENTS = kept
        assert torch.equal(torch.cat([p[0] for p in parts]), whole), (rows, piece)
        for n in wanted:
            assert torch.equal(torch.cat([p[1][n] for p in parts]), grads[n]), (rows, piece, n)
