"""Baseline: the script a user writes with np.loadtxt."""

import sys

import numpy as np
import torch
import torch.nn.functional as F

logits = torch.from_numpy(np.loadtxt(sys.argv[1], delimiter=",", dtype=np.float32))
labels = torch.from_numpy(np.loadtxt(sys.argv[2], dtype=np.int64))
logits.requires_grad_(True)
loss = F.cross_entropy(logits, labels)
loss.backward()
print(loss.item(), logits.grad.norm().item())
