"""Baseline: the script a user writes with pyarrow.csv (which reads quoted cells).

Table.to_tensor converts without importing pandas (Array.to_numpy would import it).
"""

import sys

import pyarrow.csv as pacsv
import torch
import torch.nn.functional as F

no_header = pacsv.ReadOptions(autogenerate_column_names=True)
logits = pacsv.read_csv(sys.argv[1], read_options=no_header).to_tensor().to_numpy()
labels = pacsv.read_csv(sys.argv[2], read_options=no_header).to_tensor().to_numpy()
logits = torch.from_numpy(logits).to(torch.float32).requires_grad_(True)
loss = F.cross_entropy(logits, torch.from_numpy(labels[:, 0]))
loss.backward()
print(loss.item(), logits.grad.norm().item())
