"""CTCLoss: connectionist temporal classification over unsegmented sequences."""

from __future__ import annotations

from typing import TYPE_CHECKING

from losscli.errors import InputError, OptionError
from losscli.registry import (
    FLAG,
    FLOAT,
    INDEX,
    INTEGER,
    LENGTH,
    Explain,
    InputSpec,
    LossSpec,
    OptionSpec,
)
from losscli.steps import Steps

ORDER = 60  # where its losses stand in `list` and the help

if TYPE_CHECKING:
    from losscli.validate import Context, Prepared


def _lengths(name: str, inp, count: int, low: int, high: int | None, what: str):
    """A length vector of ``count`` integers in [low, high]."""
    import numpy as np

    from losscli.validate import shown

    array = inp.array.reshape(-1) if inp.array.ndim else inp.array.reshape(1)
    if array.dtype.kind not in "iuf" or array.shape != (count,):
        raise InputError(
            f"{name} ({inp.source}) has shape {list(inp.array.shape)}; expected {count} "
            "integer(s), one per sample"
        )
    bad = (array != np.floor(array)) | (array < low)
    if high is not None:
        bad |= array > high
    if bad.any():
        i = int(np.argwhere(bad)[0][0])
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise InputError(
            f"{inp.where(i)}: {name} {shown(array[i])} is not an integer in {bound} ({what})"
        )
    return array.astype(np.int64)


def _repeats(sequence) -> int:
    return sum(1 for a, b in zip(sequence[:-1], sequence[1:]) if a == b)


def _prepare_ctc(inputs, options, ctx: Context) -> Prepared:
    import numpy as np

    from losscli.validate import Prepared, check_finite, not_log_probabilities, shown

    log_probs, targets = inputs["log_probs"], inputs["targets"]
    check_finite("log_probs", log_probs, ctx)
    check_finite("targets", targets, ctx)
    lp = log_probs.array
    if lp.ndim == 2:
        lp = lp[:, None, :]
    if lp.ndim != 3:
        raise InputError(
            f"log_probs ({log_probs.source}) have shape {list(log_probs.array.shape)}; ctc "
            "needs (T,N,C) (from NPY or NPZ) or (T,C) for one sequence"
        )
    frames, batch, classes = lp.shape
    blank = options["blank"]
    if not 0 <= blank < classes:
        raise OptionError(f"--blank {blank} is out of range; valid: 0..{classes - 1}")
    input_lengths = _lengths(
        "input length", inputs["input_lengths"], batch, 1, frames, f"T = {frames} frames"
    )
    labels = targets.array
    if labels.dtype.kind not in "iuf":
        raise InputError(f"{targets.source}: targets must be class indices (numbers)")
    if labels.ndim == 1 and batch == 1 and log_probs.array.ndim == 2:
        labels = labels[None, :]
    padded = labels.ndim == 2
    if padded and labels.shape[0] != batch:
        raise InputError(
            f"shapes do not match: log_probs hold {batch} sequence(s), targets "
            f"({targets.source}) have {labels.shape[0]} rows; targets are (N,S) padded or "
            "1-D concatenated"
        )
    if labels.ndim not in (1, 2):
        raise InputError(f"targets ({targets.source}) must be (N,S) or 1-D concatenated")
    high = labels.shape[1] if padded else None
    target_lengths = _lengths(
        "target length", inputs["target_lengths"], batch, 0, high, "the targets' length"
    )
    if not padded and target_lengths.sum() != labels.size:
        raise InputError(
            f"1-D targets ({targets.source}) hold {labels.size} labels, but the target lengths "
            f"add up to {int(target_lengths.sum())}"
        )
    used = _used_mask(labels, target_lengths)
    bad = used & (
        (labels != np.floor(labels)) | (labels < 0) | (labels >= classes) | (labels == blank)
    )
    if bad.any():
        where = tuple(np.argwhere(bad)[0])
        raise InputError(
            f"{targets.where(where)}: target {shown(labels[where])} is not a class index in "
            f"0..{classes - 1} other than the blank {blank}"
        )
    labels = np.where(used, labels, 0).astype(np.int64)
    for i, sequence in enumerate(_sequences(labels, target_lengths)):
        needed = len(sequence) + _repeats(sequence)
        if needed > input_lengths[i]:
            ctx.warn(
                f"sample {i + 1}: its target needs at least {needed} frames but its input length "
                f"is {input_lengths[i]}, so its loss is infinite"
                + ("; --zero-infinity sets it to 0" if not options["zero_infinity"] else "")
            )
            break
    reason = not_log_probabilities(lp, axis=2)
    if reason:
        ctx.warn(f"ctc log_probs are not log-probabilities ({reason}); pass log_softmax output")
    arrays = {
        "log_probs": lp,
        "targets": labels,
        "input_lengths": input_lengths,
        "target_lengths": target_lengths,
    }
    return Prepared(arrays, dict(options), "padded rows" if padded else "concatenated")


def _used_mask(labels, target_lengths):
    import numpy as np

    if labels.ndim == 2:
        return np.arange(labels.shape[1])[None, :] < target_lengths[:, None]
    return np.ones(labels.shape, dtype=bool)


def _sequences(labels, target_lengths):
    """Each sample's target sequence as a list of ints."""
    if labels.ndim == 2:
        return [list(labels[i, :n]) for i, n in enumerate(target_lengths)]
    out, start = [], 0
    for n in target_lengths:
        out.append(list(labels[start : start + n]))
        start += n
    return out


def _ctc_scale(arrays, options):
    """Mean divides each sample's loss by its target length (at least 1), then by N."""
    import numpy as np

    return 1.0 / np.maximum(arrays["target_lengths"], 1).astype(np.float64)


def ctc_negative_log_likelihood(log_probs, target, blank: int) -> float:
    """-log p(target | input) by the CTC forward recursion, in NumPy (log space)."""
    import numpy as np

    extended = [blank]
    for label in target:
        extended += [int(label), blank]
    alpha = np.full(len(extended), -np.inf)
    alpha[0] = log_probs[0, blank]
    if len(extended) > 1:
        alpha[1] = log_probs[0, extended[1]]
    skip = np.array(
        [
            s >= 2 and extended[s] != blank and extended[s] != extended[s - 2]
            for s in range(len(extended))
        ]
    )
    for t in range(1, len(log_probs)):
        new = alpha.copy()
        new[1:] = np.logaddexp(new[1:], alpha[:-1])
        new[2:] = np.where(skip[2:], np.logaddexp(new[2:], alpha[:-2]), new[2:])
        alpha = new + log_probs[t, extended]
    end = np.logaddexp(alpha[-1], alpha[-2]) if len(extended) > 1 else alpha[-1]
    return float(-end)


def _steps_ctc(arrays, options, limit) -> Steps:
    import numpy as np

    lp = np.asarray(arrays["log_probs"], dtype=np.float64)
    sequences = _sequences(arrays["targets"], arrays["target_lengths"])
    steps = Steps(
        ["sample", "input length", "target", "target length", "-log p(target)", "/ length"]
    )
    for i in range(min(limit, lp.shape[1])):
        frames = int(arrays["input_lengths"][i])
        nll = ctc_negative_log_likelihood(lp[:frames, i], sequences[i], options["blank"])
        if options["zero_infinity"] and np.isinf(nll):
            nll = 0.0
        length = len(sequences[i])
        steps.rows.append(
            [i + 1, frames, str([int(c) for c in sequences[i]]), length, nll, nll / max(length, 1)]
        )
    steps.notes.append(
        "-log p sums over every alignment that collapses to the target (forward algorithm)"
    )
    return steps


CTC = LossSpec(
    name="ctc",
    torch_class="CTCLoss",
    task="sequence recognition without alignment (speech, handwriting)",
    summary="negative log-likelihood of a label sequence, summed over all alignments",
    inputs=(
        InputSpec("log_probs", FLOAT, "log-probabilities (T,N,C) from NPY/NPZ, or (T,C)"),
        InputSpec(
            "targets",
            INDEX,
            "class indices other than the blank: (N,S) padded rows or 1-D concatenated",
        ),
        InputSpec("input_lengths", LENGTH, "(N) frames used per sample, 1..T"),
        InputSpec("target_lengths", LENGTH, "(N) labels per sample"),
    ),
    options=(
        OptionSpec("blank", 0, INTEGER, "Index of the blank label."),
        OptionSpec("zero_infinity", False, FLAG, "Set infinite losses (impossible targets) to 0."),
    ),
    prepare=_prepare_ctc,
    mean_scale=_ctc_scale,
    steps_table=_steps_ctc,
    batch_axis=1,
    chunkable=False,
    example=(
        "losscli ctc sample_data/ctc_log_probs.npy sample_data/ctc_targets.csv "
        "sample_data/ctc_input_lengths.csv sample_data/ctc_target_lengths.csv"
    ),
    explain=Explain(
        formula=(
            "loss_i = -log sum over alignments a of x_i that collapse to y_i of prod_t p_t(a_t)\n"
            "mean = 1/N sum_i loss_i / max(len(y_i), 1)"
        ),
        procedure=(
            "put a blank between the target's labels and at both ends",
            "run the forward recursion over the first input_length frames: each step stays, "
            "moves one, or skips a blank between two different labels",
            "-log of the total probability of reaching the end is the sample's loss",
            "reduce: mean divides each loss by its target length, then averages over N",
        ),
        mistakes=(
            "passing softmax probabilities or raw logits: CTCLoss needs log_softmax over C",
            "(N,T,C) instead of (T,N,C): time comes first",
            "a target longer than the input allows: the loss is infinite (see --zero-infinity)",
            "using the blank index as a label",
        ),
    ),
)

SPECS = (CTC,)
