"""safetensors files: ``FILE:KEY`` names a tensor, and only that tensor is read (through
the ``safetensors`` package: ``safe_open`` and a slice of rows per block).

The header (an 8-byte little-endian length, then JSON) is read from the source itself,
for the keys, dtypes and shapes; a stream is held whole and its tensor taken from it.
"""

from __future__ import annotations

from losscli.io.formats import Format

# A header longer than this is not taken for one (text that starts with 8 bytes and '{').
MAX_HEADER = 100 << 20
# Dtypes that NumPy has no type for: read through torch, as float32.
TORCH_ONLY = ("BF16", "F8_E4M3", "F8_E5M2")


def _is_safetensors(head: bytes) -> bool:
    if len(head) < 9:
        return False
    length = int.from_bytes(head[:8], "little")
    return 2 <= length <= MAX_HEADER and head[8:9] == b"{"


def _header(source) -> dict:
    import json

    from losscli.io.common import invalid

    first = source.read_at(0, 8)
    length = int.from_bytes(first, "little") if len(first) == 8 else 0
    if not 2 <= length <= MAX_HEADER:
        raise invalid(source.label, "safetensors", "its header length is not a header's")
    try:
        header = json.loads(source.read_at(8, length))
    except (UnicodeDecodeError, ValueError) as error:
        raise invalid(source.label, "safetensors", error) from None
    if not isinstance(header, dict):
        raise invalid(source.label, "safetensors", "its header is not a JSON object")
    header.pop("__metadata__", None)
    return header


def read(source, requests, blocks):
    from losscli.io.arrays import array_blocks, pick_key

    header = _header(source)
    key = pick_key(source.label, source.arg.key, list(header), "tensor")
    found = _blocks(source, header, key, any(r.names for r in requests), blocks)
    return array_blocks(source, "safetensors", requests, found)


def _blocks(source, header, key, names, blocks):
    """(block, first row, rows, key) of the tensor ``key``, read block by block."""
    import os

    from losscli.io.arrays import checked_dtype, sliced_blocks
    from losscli.io.common import block_rows, invalid

    label = f"{source.label}:{key}"
    entry = header[key] if isinstance(header[key], dict) else {}
    shape, dtype = entry.get("shape"), entry.get("dtype")
    if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise invalid(source.label, "safetensors", f"tensor {key!r} has no valid shape")
    framework = "pt" if dtype in TORCH_ONLY else "numpy"
    try:
        if not source.regular:
            array = _from_bytes(source.file.read_all(), key, framework)
            yield from sliced_blocks(checked_dtype(array, label, "safetensors", names), blocks, key)
            return
        from safetensors import safe_open

        # The descriptor opened once, named through /proc where it can be.
        fd_path = f"/proc/self/fd/{source.file.fileno()}"
        path = fd_path if os.path.exists(fd_path) else source.arg.path
        with safe_open(path, framework=framework) as opened:
            rows = shape[0] if shape else None
            width = 1
            for n in shape[1:]:
                width *= n
            step = block_rows(blocks, width)
            if not shape or step is None or rows <= step:
                array = _numpy(opened.get_tensor(key))
                checked = checked_dtype(array, label, "safetensors", names)
                yield from sliced_blocks(checked, blocks, key)
                return
            part = opened.get_slice(key)
            for start in range(0, rows, step):
                array = _numpy(part[start : min(start + step, rows)])
                yield checked_dtype(array, label, "safetensors", names), start, rows, key
    except (OSError, ValueError, RuntimeError) as error:  # safetensors' own errors too
        raise invalid(source.label, "safetensors", error) from None
    except Exception as error:
        if type(error).__name__ == "SafetensorError":
            raise invalid(source.label, "safetensors", error) from None
        raise


def _from_bytes(data: bytes, key: str, framework: str):
    if framework == "pt":
        from safetensors.torch import load

        return _numpy(load(data)[key])
    from safetensors.numpy import load

    return load(data)[key]


def _numpy(value):
    """A block as NumPy (a torch tensor of a dtype NumPy lacks becomes float32)."""
    if hasattr(value, "numpy") and not hasattr(value, "__array_interface__"):
        return value.float().numpy() if value.is_floating_point() else value.numpy()
    return value


FORMAT = Format(
    "safetensors",
    (".safetensors",),
    "safetensors file: FILE:KEY names a tensor; only that tensor is read",
    read,
    magic=_is_safetensors,
    head_bytes=9,
    keys=True,
)
