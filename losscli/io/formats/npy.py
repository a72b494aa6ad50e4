"""NPY: one array, memory-mapped where it is a regular file (reader: ``losscli.io.arrays``)."""

from __future__ import annotations

from losscli.io.formats import Format

MAGIC = b"\x93NUMPY"


def read(source, requests, blocks):
    from losscli.io.arrays import array_blocks, npy_blocks

    names = any(r.names for r in requests)
    found = ((*block, None) for block in npy_blocks(source, names, blocks))
    return array_blocks(source, "npy", requests, found)


FORMAT = Format(
    "npy",
    (".npy",),
    "NumPy array (np.save)",
    read,
    magic=lambda head: head.startswith(MAGIC),
    head_bytes=len(MAGIC),
)
