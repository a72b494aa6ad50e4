"""The only module that imports torch: tensors on the device, forward, backward.

Every loss is computed as a sum over rows divided by a denominator. The engine walks the
inputs in chunks of rows, keeps (sum, denominator) and the gradient of each chunk's sum, and
scales the gradient once the denominator is known; the whole array is the one-chunk case.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass

import numpy as np

from losscli.errors import DeviceError, OptionError
from losscli.registry import FLOAT, LABEL, LossSpec
from losscli.validate import Prepared

DTYPES = ("float32", "float64", "float16", "bfloat16")
DEVICES_HELP = "cpu, cuda, cuda:N, mps or auto"
# Elements of the widest input per chunk: bounds the memory autograd holds at once.
CHUNK_ELEMENTS = 1 << 24


@dataclass
class EngineOutput:
    """What the computation gives: the reduced value, its parts, and the gradients."""

    value: float | np.ndarray
    total: float
    denominator: float
    gradients: dict[str, np.ndarray] | None
    elements: np.ndarray
    device: str
    compute_s: float


def import_torch():
    """Import torch, turning a broken installation into a clear error."""
    try:
        import torch
    except ImportError as error:  # pragma: no cover - depends on the installation
        raise DeviceError(f"cannot import torch ({error}); install PyTorch first") from None
    return torch


def preload_torch() -> None:
    """Start importing torch in a background thread, so that the second or so it takes
    overlaps with reading the inputs (pyarrow and NumPy release the GIL while parsing).
    ``import_torch`` later waits for it through Python's import lock. The thread is not a
    daemon: a run that ends early (bad input) waits for the import to finish rather than
    tearing torch down half-imported at interpreter exit."""
    import contextlib
    import threading

    def load() -> None:
        with contextlib.suppress(Exception):  # the foreground import reports a broken torch
            import torch  # noqa: F401

    threading.Thread(target=load, name="losscli-import-torch").start()


def available_devices(torch) -> list[str]:
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def resolve_device(name: str):
    """A torch.device for --device, or DeviceError naming what this torch build has."""
    torch = import_torch()
    name = name.strip().lower()
    devices = available_devices(torch)
    if name == "auto":
        name = next((d for d in devices if d != "cpu"), "cpu")
        return torch.device(name)
    build = f"this torch build ({torch.__version__}) has: {', '.join(devices)}"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(
            f"--device {name!r} is not a device name ({DEVICES_HELP}); {build}"
        ) from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"--device {name!r} is not supported ({DEVICES_HELP}); {build}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            reason = "no CUDA support" if torch.version.cuda is None else "no CUDA device visible"
            raise DeviceError(f"--device {name!r} is not available: {reason}; {build}")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise DeviceError(
                f"--device {name!r} is out of range ({count} CUDA device(s)); {build}"
            )
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
    if device.type == "mps" and "mps" not in devices:
        raise DeviceError(f"--device 'mps' is not available; {build}")
    return device


def _torch_dtype(torch, name: str):
    if name not in DTYPES:
        raise OptionError(f"--dtype {name!r} is not one of {', '.join(DTYPES)}")
    return getattr(torch, name)


def _chunks(spec: LossSpec, prepared: Prepared, chunk_elements: int) -> list:
    arrays = prepared.arrays
    first = arrays[spec.inputs[0].name]
    if not spec.chunkable or first.ndim == 0:
        return [Ellipsis]  # the whole array, 0-d ones included
    rows = first.shape[0]
    width = max(max(a[:1].size, 1) for a in arrays.values() if a.ndim)
    step = max(1, chunk_elements // width)
    return [slice(start, min(start + step, rows)) for start in range(0, rows, step)]


def _to_tensor(torch, array: np.ndarray, device, dtype, as_float: bool = False):
    """A tensor on ``device``: floats (and integers where ``as_float``: integer-typed
    predictions) in the compute dtype, other integers as int64."""
    if as_float or array.dtype.kind in "fb":
        host_dtype = np.float64 if dtype == torch.float64 else np.float32
        host = np.ascontiguousarray(array, dtype=host_dtype)
        with warnings.catch_warnings():
            # A memory-mapped NPY is read-only; inputs are never written to, so share it.
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return torch.from_numpy(host).to(device=device, dtype=dtype)
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64)).to(device)


def _option_tensors(torch, prepared: Prepared, rows: slice, device, dtype) -> dict:
    kwargs = {}
    for key, value in prepared.options.items():
        if isinstance(value, np.ndarray):
            if key in prepared.row_options:
                value = value[rows]
            value = _to_tensor(torch, value, device, dtype)
        elif isinstance(value, np.floating):
            value = float(value)
        kwargs[key] = value
    return kwargs


def run(
    spec: LossSpec,
    prepared: Prepared,
    *,
    reduction: str = "mean",
    device: str = "cpu",
    dtype: str = "float32",
    grad: bool = True,
    keep_rows: int = 0,
    chunk_elements: int = CHUNK_ELEMENTS,
) -> EngineOutput:
    """Compute the loss (and the gradients of its float inputs) chunk by chunk."""
    torch = import_torch()
    torch_device = resolve_device(device)
    torch_dtype = _torch_dtype(torch, dtype)
    started = time.perf_counter()
    arrays = prepared.arrays
    mean = reduction in ("mean", "batchmean")
    differentiable = [i.name for i in spec.inputs if i.differentiable] if grad else []
    float_inputs = {i.name for i in spec.inputs if i.role in (FLOAT, LABEL)}
    # Block sums are taken in float64 on the device (float32 on MPS, which has no float64).
    sum_dtype = torch.float32 if torch_device.type == "mps" else torch.float64
    grad_dtype = np.float64 if dtype == "float64" else np.float32
    chunks = _chunks(spec, prepared, chunk_elements)
    gradients = {}
    if len(chunks) > 1:
        gradients = {n: np.empty(arrays[n].shape, dtype=grad_dtype) for n in differentiable}
    scale = spec.mean_scale(arrays, prepared.options) if mean and spec.mean_scale else None
    total, denominator, kept, kept_rows = 0.0, 0.0, [], 0
    with torch.set_grad_enabled(bool(differentiable)):
        for rows in chunks:
            options = _option_tensors(torch, prepared, rows, torch_device, torch_dtype)
            loss_fn = getattr(torch.nn, spec.torch_class)(reduction="none", **options)
            chunk = {n: arrays[n][rows] for n in spec.input_names}
            tensors = {
                n: _to_tensor(torch, a, torch_device, torch_dtype, n in float_inputs)
                for n, a in chunk.items()
            }
            for name in differentiable:
                tensors[name].requires_grad_(True)
            try:
                elements = loss_fn(*(tensors[n] for n in spec.input_names))
                summed = elements
                if scale is not None:
                    summed = elements * _to_tensor(torch, scale[rows], torch_device, torch_dtype)
                chunk_sum = summed.sum(dtype=sum_dtype)
                if differentiable:
                    chunk_sum.backward()
            except (RuntimeError, NotImplementedError) as error:
                if "not implemented for" not in str(error):
                    raise
                raise OptionError(
                    f"--dtype {dtype} is not supported by {spec.torch_class} on "
                    f"{torch_device.type} in this torch build ({str(error).splitlines()[0]})"
                ) from None
            total += float(chunk_sum.item())
            if mean:
                denominator += float(
                    spec.mean_denominator(chunk, prepared.options, reduction, elements.numel())
                    if spec.mean_denominator
                    else elements.numel()
                )
            for name in differentiable:
                host = tensors[name].grad.to(torch.float64 if dtype == "float64" else torch.float32)
                if len(chunks) > 1:
                    gradients[name][rows] = host.cpu().numpy()
                else:
                    gradients[name] = host.cpu().numpy()
            wanted = None if reduction == "none" else keep_rows - kept_rows
            if wanted is None or wanted > 0:
                values = np.atleast_1d(elements.detach()[:wanted].double().cpu().numpy())
                kept.append(values)
                kept_rows += len(values)
    if mean:
        # A mean over nothing (every target ignored, or zero total weight) is NaN, as in
        # torch; its gradient is 0 (torch's too where every target is ignored).
        value = total / denominator if denominator else math.nan
        factor = 1.0 / denominator if denominator else 0.0
        for g in gradients.values():
            np.multiply(g, factor, out=g)
    else:
        value = total
    elements_out = np.concatenate(kept) if kept else np.empty(0)
    return EngineOutput(
        value=elements_out if reduction == "none" else value,
        total=total,
        denominator=denominator if mean else math.nan,
        gradients=gradients if grad else None,
        elements=elements_out,
        device=str(torch_device),
        compute_s=time.perf_counter() - started,
    )


def gradient_summary(gradient: np.ndarray, block: int = 1 << 20) -> dict:
    """Shape, L2 norm, mean, min and max of a gradient, accumulated in float64 by blocks."""
    flat = gradient.reshape(-1)
    squares = total = 0.0
    low, high = math.inf, -math.inf
    with np.errstate(invalid="ignore", over="ignore"):
        for start in range(0, flat.size, block):
            part = flat[start : start + block].astype(np.float64)
            squares += float(np.dot(part, part))
            total += float(part.sum())
            low = float(np.minimum(low, part.min()))  # NaN propagates, as it should
            high = float(np.maximum(high, part.max()))
    count = flat.size
    return {
        "shape": list(gradient.shape),
        "norm": math.sqrt(squares),
        "mean": total / count if count else math.nan,
        "min": low if count else math.nan,
        "max": high if count else math.nan,
    }
