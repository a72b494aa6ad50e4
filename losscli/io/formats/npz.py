"""NPZ: a ZIP archive of NPY arrays, one named as ``FILE:KEY`` (reader: ``losscli.io.arrays``)."""

from __future__ import annotations

from losscli.io.formats import Format
from losscli.io.formats._zip import TORCH_HEAD_BYTES, is_torch_zip, is_zip


def read(source, requests, blocks):
    from losscli.io.arrays import array_blocks, npz_blocks

    found = npz_blocks(source, any(r.names for r in requests), blocks)
    return array_blocks(source, "npz", requests, found)


FORMAT = Format(
    "npz",
    (".npz",),
    "NumPy archive (np.savez), FILE:KEY picks an array",
    read,
    magic=lambda head: is_zip(head) and not is_torch_zip(head),
    head_bytes=TORCH_HEAD_BYTES,
    keys=True,
)
