"""``torch.save`` files (``.pt``, ``.pth``): a tensor, or a dict or list of tensors of which
``FILE:KEY`` picks one (``FILE:0`` for a list).

Loaded with ``weights_only=True`` and ``map_location="cpu"`` only: a file that needs anything
beyond tensors and plain containers is refused, and nothing in it is run. torch is imported
when a file of this format is read, not before.
"""

from __future__ import annotations

from losscli.io.formats import Format
from losscli.io.formats._zip import TORCH_HEAD_BYTES, is_torch_zip

# torch.save's legacy (non-ZIP) format: pickle protocol 2, then its magic number.
LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"


def read(source, requests, blocks):
    from losscli.io.arrays import array_blocks, sliced_blocks

    array, key = _load(source, any(r.names for r in requests))
    return array_blocks(source, "pt", requests, sliced_blocks(array, blocks, key))


def _load(source, names: bool):
    """The one tensor the source names, as a NumPy array, and its key (None for a file
    that is a tensor)."""
    import pickle
    import warnings

    from losscli.io.arrays import checked_dtype, pick_key
    from losscli.io.common import invalid
    from losscli.torch_loader import import_torch

    torch = import_torch()
    label = source.label
    handle = source.seekable_whole()
    handle.seek(0)
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols it meets
            warnings.simplefilter("ignore")
            loaded = torch.load(handle, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as error:
        # torch's message starts with advice to load without weights_only: not given here.
        lines = [line.strip() for line in str(error).splitlines()[1:] if line.strip()]
        found = next((line for line in lines if "nsupported" in line), "")
        found = found.rpartition("WeightsUnpickler error: ")[2] or "not tensors"
        raise _error(
            f"{label}: not a safe PyTorch file: it needs more than tensors and plain containers "
            f"({found}); refused by torch's weights-only loader, nothing in it was run"
        ) from None
    except Exception as error:  # zip, pickle and storage errors have unrelated types
        raise invalid(label, "PyTorch", error) from None
    key = source.arg.key
    if isinstance(loaded, torch.Tensor):
        if key is not None:
            raise _error(f"{label}: holds one tensor, not a dict or list; name it without :{key}")
        tensor = loaded
    elif isinstance(loaded, dict | list | tuple):
        entries = (
            {str(k): v for k, v in loaded.items()}
            if isinstance(loaded, dict)
            else {str(i): v for i, v in enumerate(loaded)}
        )
        tensors = [k for k, v in entries.items() if isinstance(v, torch.Tensor)]
        if key is not None and key in entries and key not in tensors:
            kind = type(entries[key]).__name__
            raise _error(f"{label}:{key} is a {kind}, not a tensor; tensors: {', '.join(tensors)}")
        key = pick_key(label, key, tensors, "tensor")
        tensor = entries[key]
    else:
        raise _error(
            f"{label}: holds a {type(loaded).__name__}; expected a tensor, or a dict or list "
            "of tensors"
        )
    shown = label if key is None else f"{label}:{key}"
    if tensor.layout != torch.strided or tensor.is_quantized or tensor.is_complex():
        raise _error(f"{shown}: a {tensor.layout} {tensor.dtype} tensor; expected real numbers")
    tensor = tensor.detach()
    if tensor.dtype not in (torch.float16, torch.float32, torch.float64) and (
        tensor.is_floating_point()
    ):
        tensor = tensor.to(torch.float32)  # bfloat16 and float8 have no NumPy dtype
    return checked_dtype(tensor.numpy(), shown, "PyTorch", names), key


def _error(message: str):
    from losscli.errors import InputError

    return InputError(message)


FORMAT = Format(
    "pt",
    (".pt", ".pth"),
    "torch.save file: a tensor, or a dict/list of tensors (FILE:KEY); weights_only=True",
    read,
    magic=lambda head: is_torch_zip(head) or head.startswith(LEGACY_MAGIC),
    head_bytes=TORCH_HEAD_BYTES,
    keys=True,
)
