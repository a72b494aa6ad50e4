"""``--from logits|probs|log-probs``: say what the predictions are, and convert them to what
the loss takes (ce and bce-logits take logits, nll and kl-div log-probabilities, bce
probabilities).

Validation and the views see the converted predictions (NumPy, float64); torch computes the
conversion again inside autograd, so that the gradient is with respect to the predictions as
given. Probabilities are clamped to [eps, 1] before a logarithm (to [eps, 1 - eps] for a
logit), eps being the machine epsilon of --dtype, as scikit-learn's ``log_loss`` clips
to [eps, 1 - eps]; a clamped probability has no gradient.
"""

from __future__ import annotations

from losscli.errors import InputError, OptionError

KINDS = ("logits", "probs", "log-probs")
EPS = {"float64": 2.220446049250313e-16, "float32": 1.1920929e-07, "float16": 0.0009765625,
       "bfloat16": 0.0078125}  # fmt: skip


def losses() -> list[str]:
    """The losses that take --from: those whose spec says what their predictions are."""
    from losscli.registry import all_specs

    return [name for name, spec in all_specs().items() if spec.predictions_are]


def check(spec, kind: str | None) -> tuple[str | None, str | None]:
    """(what --from says the predictions are, the conversion it asks of the loss of
    ``spec``: None where the loss takes them as they are)."""
    if kind is None:
        return None, None
    if kind not in KINDS:
        raise OptionError(f"--from {kind!r} is not one of {', '.join(KINDS)}")
    if spec.predictions_are is None:
        raise OptionError(
            f"--from applies to {', '.join(losses())}; {spec.name} takes its predictions as "
            "they are"
        )
    return kind, None if spec.predictions_are == kind else kind


def _axis(array) -> int:
    return 1 if array.ndim >= 2 else 0


def check_values(kind: str, source: str, array) -> None:
    """Refuse predictions that cannot be ``kind``: probabilities outside [0, 1],
    log-probabilities above 0."""
    import numpy as np

    if not array.size:
        return
    if kind == "probs" and (np.nanmin(array) < 0 or np.nanmax(array) > 1):
        bad = np.nanmin(array) if np.nanmin(array) < 0 else np.nanmax(array)
        raise InputError(
            f"predictions ({source}): --from probs, but {float(bad)!r} is not a probability "
            "in [0, 1]"
        )
    if kind == "log-probs" and np.nanmax(array) > 0:
        raise InputError(
            f"predictions ({source}): --from log-probs, but {float(np.nanmax(array))!r} > 0 is "
            "not a log-probability"
        )


def row_sums(spec, kind: str, inp, ctx) -> None:
    """Warn (once, over every block) where --from probs or log-probs rows of a loss whose
    rows are class distributions do not sum to 1: a loss of logits (ce) normalises them,
    one of log-probabilities (nll, kl-div) takes them as they are."""
    import numpy as np

    from losscli.validate import sum_tolerance

    array = inp.array
    if not spec.class_rows or kind == "logits" or array.ndim < 2:
        return
    probs = np.asarray(array, dtype=np.float64)
    probs = probs if kind == "probs" else np.exp(probs)
    sums = probs.sum(axis=1)
    tolerance = sum_tolerance(probs)
    wrong = ~np.isclose(sums, 1.0, rtol=0, atol=tolerance) & ~np.isnan(sums)
    if not wrong.any():
        return
    row = np.argwhere(wrong)[0]
    first = f"first at row {row[0] + inp.row_offset + 1} (sum {float(sums[tuple(row)]):.6g})"
    ctx.gather(
        "from probs sums",
        (first,),
        lambda fact: (
            f"--from {kind}: predictions ({inp.source}) have rows that do not sum to 1, "
            f"{fact[0]}; "
            + (
                f"{spec.name} normalises each row"
                if spec.predictions_are == "logits"
                else f"{spec.name} takes them as they are"
            )
        ),
        first_wins=1,
    )


def array(spec, kind: str, values, dtype: str):
    """The predictions converted (float64 NumPy) to what the loss takes: ``tensor``'s
    conversion, on the CPU without autograd."""
    import numpy as np

    from losscli.torch_loader import import_torch

    torch = import_torch()
    with torch.no_grad():
        x = torch.from_numpy(np.array(values, dtype=np.float64))
        return tensor(torch, spec, kind, x, dtype).numpy()


def tensor(torch, spec, kind: str, x, dtype: str):
    """The predictions ``x`` (a torch tensor) converted to what the loss of ``spec`` takes,
    in autograd where ``x`` requires a gradient."""
    eps = EPS[dtype]
    target = spec.predictions_are
    if target == "logits" and spec.class_rows:  # softmax logits: log p will do
        return torch.log(x.clamp(eps, 1.0)) if kind == "probs" else x
    if target == "logits":
        p = (x if kind == "probs" else torch.exp(x)).clamp(eps, 1 - eps)
        return torch.log(p) - torch.log1p(-p)
    if target == "log-probs":
        if kind == "probs":
            return torch.log(x.clamp(eps, 1.0))
        return torch.log_softmax(x, dim=_axis(x))
    if kind == "logits":
        return torch.sigmoid(x)
    return torch.exp(x)
