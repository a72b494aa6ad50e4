"""What the fused loss kernels share: pieces of rows sized for the cache.

A fused kernel (``LossSpec.fused``) computes the unreduced loss and the gradient of
``scale`` times its sum in one pass of torch ops, without autograd. On the CPU it runs piece
by piece, each piece small enough that its temporaries stay in the cache while the next op
reads them, and writes into arrays made once for the whole block; on an accelerator, where
one launch per op is what costs, a block is one piece.
"""

from __future__ import annotations

# Elements of the first input in one piece (2 MB of float32): each op on a piece is long
# enough to share between threads, and its temporaries stay in the cache for the next op.
# Measured on 2M x 10 float32 (benchmarks/floors.py): ce and bce-logits are fastest from
# 2^17 to 2^21; 2^15 loses to the threads' start-up per op. (Tests set it small to cross
# piece boundaries.)
PIECE_ELEMENTS = 1 << 19


def row_pieces(tensor) -> list[slice]:
    """Slices of the first axis of ``tensor``, each about PIECE_ELEMENTS elements (one slice
    off the CPU, or for a tensor with no rows)."""
    rows = tensor.shape[0] if tensor.dim() else 0
    if tensor.device.type != "cpu" or rows == 0:
        return [slice(None)]
    width = max(tensor.numel() // rows, 1)
    step = max(PIECE_ELEMENTS // width, 1)
    return [slice(start, start + step) for start in range(0, rows, step)]


def flat_pieces(tensor) -> list[slice]:
    """Slices of ``tensor`` flattened (``tensor.reshape(-1)``), about PIECE_ELEMENTS each."""
    count = tensor.numel()
    if tensor.device.type != "cpu" or count == 0:
        return [slice(None)]
    return [slice(start, start + PIECE_ELEMENTS) for start in range(0, count, PIECE_ELEMENTS)]
