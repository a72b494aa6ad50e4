"""Baseline: the whole-array script a user writes for BCEWithLogitsLoss on NPY files, saving
the gradient."""

import sys

import numpy as np
import torch
import torch.nn.functional as F

logits = torch.from_numpy(np.load(sys.argv[1]))
targets = torch.from_numpy(np.load(sys.argv[2]))
logits.requires_grad_(True)
loss = F.binary_cross_entropy_with_logits(logits, targets)
loss.backward()
np.save(sys.argv[3], logits.grad.numpy())
print(loss.item())
