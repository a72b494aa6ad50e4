"""Regenerate the files in sample_data/ (deterministic): python sample_data/make_sample_data.py"""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).parent


def save_csv(name, array, header=None, fmt="%.6f"):
    text_header = ",".join(header) if header else ""
    np.savetxt(HERE / name, array, delimiter=",", fmt=fmt, header=text_header, comments="")


def log_softmax(x):
    shifted = x - x.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def log_softmax_last(x):
    shifted = x - x.max(axis=-1, keepdims=True)
    out = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return out.astype(np.float32)


def main():
    rng = np.random.default_rng(7)
    # Multi-class: 10 samples, 5 classes.
    logits = np.round(rng.normal(0, 1.5, size=(10, 5)), 6)
    labels = rng.integers(0, 5, size=10)
    save_csv("logits.csv", logits)
    save_csv("labels.csv", labels, fmt="%d")
    np.save(HERE / "logits.npy", logits.astype(np.float32))
    np.save(HERE / "labels.npy", labels.astype(np.int64))
    probs = rng.dirichlet(np.ones(5), size=10)
    save_csv("target_probs.csv", probs, fmt="%.8f")
    log_probs = np.round(log_softmax(logits), 6)
    save_csv("log_probs.csv", log_probs)
    np.save(HERE / "log_probs.npy", log_probs.astype(np.float32))
    # Segmentation-style K-dimensional input: (N, C, d1) logits and (N, d1) labels.
    np.save(HERE / "seg_logits.npy", rng.normal(size=(4, 3, 6)).astype(np.float32))
    np.save(HERE / "seg_labels.npy", rng.integers(0, 3, size=(4, 6)).astype(np.int64))
    # Class names: predictions whose header names the classes, targets given as names.
    names = ["cat", "dog", "bird"]
    scores = np.round(rng.normal(size=(8, 3)), 6)
    save_csv("scores_named.csv", scores, header=names)
    (HERE / "labels_named.csv").write_text(
        "\n".join(names[i] for i in rng.integers(0, 3, size=8)) + "\n"
    )
    # Regression: (10, 3) predictions and targets.
    y_true = np.round(rng.normal(size=(10, 3)), 6)
    y_pred = np.round(y_true + rng.normal(0, 0.5, size=(10, 3)), 6)
    save_csv("y_pred.csv", y_pred)
    save_csv("y_true.csv", y_true)
    np.save(HERE / "y_pred.npy", y_pred.astype(np.float32))
    np.save(HERE / "y_true.npy", y_true.astype(np.float32))
    # Binary / multi-label: probabilities and 0/1 targets, (10, 4).
    bce_probs = np.round(1 / (1 + np.exp(-rng.normal(size=(10, 4)))), 6)
    bce_targets = rng.integers(0, 2, size=(10, 4))
    save_csv("bce_probs.csv", bce_probs)
    save_csv("bce_targets.csv", bce_targets, fmt="%d")
    np.save(HERE / "bce_probs.npy", bce_probs.astype(np.float32))
    np.save(HERE / "bce_targets.npy", bce_targets.astype(np.float32))
    # Single-file mode: one table with y (target) and y_hat (prediction) columns.
    y = np.round(rng.normal(size=12), 6)
    y_hat = np.round(y + rng.normal(0, 0.3, size=12), 6)
    save_csv("table.csv", np.column_stack([y, y_hat]), header=["y", "y_hat"])
    pq.write_table(pa.table({"y": y, "y_hat": y_hat}), HERE / "table.parquet")
    # Count regression (poisson-nll): log-rates and counts; variances for gaussian-nll.
    rates = rng.uniform(0.5, 4.0, size=(10, 3))
    save_csv("poisson_log_rates.csv", np.round(np.log(rates) + rng.normal(0, 0.2, (10, 3)), 6))
    save_csv("counts.csv", rng.poisson(rates), fmt="%d")
    save_csv("var.csv", np.round(rng.uniform(0.1, 1.0, size=(10, 3)), 6))
    # Multi-label logits (bce-logits, multilabel-*), and -1 padded target indices.
    save_csv("bce_logits.csv", np.round(rng.normal(0, 2, size=(10, 4)), 6))
    indices = np.full((10, 4), -1)
    for row in indices:
        chosen = rng.choice(4, size=rng.integers(1, 4), replace=False)
        row[: len(chosen)] = chosen
    save_csv("ml_labels.csv", indices, fmt="%d")
    # +1/-1 targets for soft-margin, hinge-embedding and margin-ranking (12 elements).
    save_csv("scores.csv", np.round(rng.normal(size=12), 6))
    save_csv("signs.csv", rng.choice([-1, 1], size=12), fmt="%d")
    save_csv("distances.csv", np.round(rng.uniform(0, 2, size=12), 6))
    save_csv("rank1.csv", np.round(rng.normal(size=12), 6))
    save_csv("rank2.csv", np.round(rng.normal(size=12), 6))
    # Embeddings (8, 5) for cosine-embedding and triplet-margin.
    anchor = rng.normal(size=(8, 5))
    save_csv("emb1.csv", np.round(anchor, 6))
    save_csv("emb2.csv", np.round(anchor + rng.normal(0, 0.5, size=(8, 5)), 6))
    save_csv("emb3.csv", np.round(rng.normal(size=(8, 5)), 6))
    save_csv("pair_y.csv", rng.choice([-1, 1], size=8), fmt="%d")
    # CTC: (T=12, N=3, C=5) log-probabilities, padded targets (blank 0), and lengths.
    np.save(HERE / "ctc_log_probs.npy", log_softmax_last(rng.normal(size=(12, 3, 5))))
    target_lengths = np.array([4, 2, 3])
    targets = np.zeros((3, 4), dtype=int)
    for i, n in enumerate(target_lengths):
        targets[i, :n] = rng.integers(1, 5, size=n)
    save_csv("ctc_targets.csv", targets, fmt="%d")
    save_csv("ctc_input_lengths.csv", np.array([12, 10, 11]), fmt="%d")
    save_csv("ctc_target_lengths.csv", target_lengths, fmt="%d")
    # Beyond the number (its own generator, so the files above stay as they are):
    # probabilities for --from probs, a second model for compare, a table with a split column.
    more = np.random.default_rng(11)
    probs = np.exp(log_softmax(logits))
    save_csv("probs.csv", probs, fmt="%.10f")
    better = logits + 1.5 * np.eye(5)[labels] + more.normal(0, 0.5, size=logits.shape)
    save_csv("logits_b.csv", np.round(better, 6))
    n = 60
    eval_labels = more.integers(0, 3, size=n)
    eval_logits = np.round(more.normal(0, 1.5, size=(n, 3)) + 1.2 * np.eye(3)[eval_labels], 6)
    split = more.choice(["train", "val", "test"], size=n)
    rows = [",".join(f"{v:.6f}" for v in eval_logits[i]) + f",{eval_labels[i]},{split[i]}"
            for i in range(n)]  # fmt: skip
    (HERE / "eval.csv").write_text("cat,dog,bird,label,split\n" + "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
