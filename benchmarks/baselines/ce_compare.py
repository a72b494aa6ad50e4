"""Baseline: the script a user writes to compare two models' cross-entropy on the same
labels: both losses, the paired difference, its standard error and 95% interval."""

import sys

import numpy as np
import torch
import torch.nn.functional as F

labels = torch.from_numpy(np.load(sys.argv[3]))
a = F.cross_entropy(torch.from_numpy(np.load(sys.argv[1])), labels, reduction="none")
b = F.cross_entropy(torch.from_numpy(np.load(sys.argv[2])), labels, reduction="none")
d = (b - a).double().numpy()
stderr = d.std(ddof=1) / np.sqrt(len(d))
print(
    a.mean().item(), b.mean().item(), d.mean(), d.mean() - 1.96 * stderr, d.mean() + 1.96 * stderr
)
