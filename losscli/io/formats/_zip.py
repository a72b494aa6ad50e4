"""ZIP archives that two formats share: NPZ (``np.savez``) and ``torch.save``'s archive.

Told apart by the name of the archive's first member, which its local header holds at the
start of the file: ``torch.save`` writes ``ARCHIVE/data.pkl`` first, ``np.savez`` an ``.npy``.
"""

from __future__ import annotations

ZIP_MAGIC = b"PK\x03\x04"
# The fixed part of a ZIP local header, then room for the first member's name.
TORCH_HEAD_BYTES = 30 + 1024


def is_zip(head: bytes) -> bool:
    return head.startswith(ZIP_MAGIC)


def first_member(head: bytes) -> str | None:
    """The name of the archive's first member, where ``head`` holds it."""
    if not is_zip(head) or len(head) < 30:
        return None
    length = int.from_bytes(head[26:28], "little")
    name = head[30 : 30 + length]
    return name.decode("utf-8", "replace") if len(name) == length else None


def is_torch_zip(head: bytes) -> bool:
    name = first_member(head)
    return name is not None and (name == "data.pkl" or name.endswith("/data.pkl"))
