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
from functools import partial

import numpy as np

from losscli.errors import DeviceError, OptionError
from losscli.io.write import scaled_as_stored
from losscli.registry import FLOAT, LABEL, LossSpec
from losscli.sums import OrderedSum
from losscli.torch_loader import import_torch
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
            return _to_device(torch.from_numpy(host), device, dtype)
    return _to_device(torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64)), device)


def _to_device(tensor, device, dtype=None):
    """A host tensor on ``device``. A block bound for a GPU goes through page-locked memory
    (torch caches it between blocks), so that its copy runs asynchronously while the GPU is
    still busy with the work queued before it."""
    if device.type == "cuda":
        tensor = tensor.pin_memory()
        return tensor.to(device=device, dtype=dtype, non_blocking=True)
    return tensor.to(device=device, dtype=dtype) if dtype is not None else tensor.to(device)


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


class BlockRun:
    """One loss computed over blocks of rows given one by one (``add``): keeps the float64
    (sum, denominator), the first ``keep_rows`` per-sample losses and the time spent, and
    returns each block's gradients of the sum, to be scaled by ``factor`` once every block
    has been seen. A whole input is the one-block case."""

    def __init__(
        self,
        spec: LossSpec,
        *,
        reduction: str = "mean",
        device: str = "cpu",
        dtype: str = "float32",
        grad: bool = True,
        grad_inputs: list[str] | None = None,
        keep_rows: int = 0,
        chunk_elements: int = CHUNK_ELEMENTS,
        convert_from: str | None = None,
        keep_elements: bool = False,
        convert_dtype: str | None = None,
        fused: bool = True,
    ):
        self.torch = torch = import_torch()
        self.spec = spec
        self.reduction, self.dtype, self.keep_rows = reduction, dtype, keep_rows
        self.chunk_elements = chunk_elements
        self.convert_from = convert_from  # --from: converted in autograd (losscli.convert)
        self.convert_dtype = convert_dtype or dtype  # whose epsilon --from clamps with
        # Where asked: the element count and sum of squares of the unreduced loss (a state's),
        # and the last block's unreduced loss (float64, flat, by chunks) and the loss of each
        # of its rows (the sum of its elements), which the views take.
        self.keep_elements = keep_elements
        self.count, self.squares = 0, 0.0
        self.last_elements: list[np.ndarray] = []
        self.last_rows: list[int] = []  # the row count of each chunk of the last block
        self.last_shape: tuple = ()
        self.device = resolve_device(device)
        self.torch_dtype = _torch_dtype(torch, dtype)
        self.mean = reduction in ("mean", "batchmean")
        # The inputs whose gradient is computed: every differentiable one, or those named.
        self.differentiable = [
            i.name
            for i in spec.inputs
            if grad and i.differentiable and (grad_inputs is None or i.name in grad_inputs)
        ]
        self.float_inputs = {i.name for i in spec.inputs if i.role in (FLOAT, LABEL)}
        # Block sums are taken in float64 on the device (float32 on MPS, which has no float64).
        self.sum_dtype = torch.float32 if self.device.type == "mps" else torch.float64
        # The loss's fused kernel (no autograd graph) where it has one, in float32 and
        # float64; autograd stays the reference and does the rest (LOSSCLI_FUSED=0: always).
        import os

        self.fused = (
            fused
            and spec.fused is not None
            and dtype in ("float32", "float64")
            and os.environ.get("LOSSCLI_FUSED", "1") != "0"
        )
        self.grad_dtype = np.float64 if dtype == "float64" else np.float32
        # The sum and the denominator, bit-identical whatever the blocks (losscli.sums).
        self.sums = OrderedSum()
        self._wide: list = []  # float64 buffers for the losses of a block's chunks
        self.denominators = OrderedSum()
        self.kept: list[np.ndarray] = []
        self.kept_rows = 0
        self.compute_s = 0.0

    def add(self, prepared: Prepared, raw=None, times: float = 1.0) -> dict[str, np.ndarray]:
        """Compute one block; returns the gradients of ``times`` times its sum (empty without
        gradients): a fused kernel scales as it computes, autograd's are scaled on the host.
        ``raw``: the first input as given, which --from converts (``prepared`` holds it
        converted)."""
        from losscli import convert

        torch, spec = self.torch, self.spec
        started = time.perf_counter()
        arrays = prepared.arrays
        self.last_elements, self.last_rows, self.last_shape = [], [], ()
        chunks = _chunks(spec, prepared, self.chunk_elements)
        gradients = {}
        if len(chunks) > 1:
            gradients = {
                n: np.empty(arrays[n].shape, dtype=self.grad_dtype) for n in self.differentiable
            }
        scale = spec.mean_scale(arrays, prepared.options) if self.mean and spec.mean_scale else None
        device, dtype = self.device, self.torch_dtype
        with torch.set_grad_enabled(bool(self.differentiable)):
            for rows in chunks:
                options = _option_tensors(torch, prepared, rows, device, dtype)
                loss_fn = spec.unreduced(torch, options)
                chunk = {n: arrays[n][rows] for n in spec.input_names}
                given = dict(chunk)
                first = spec.input_names[0]
                if raw is not None:
                    given[first] = raw.reshape(arrays[first].shape)[rows]
                tensors = {
                    n: _to_tensor(torch, a, device, dtype, n in self.float_inputs)
                    for n, a in given.items()
                }
                fused = None
                if self.fused and raw is None and scale is None:
                    with torch.no_grad():
                        fused = spec.fused(torch, tensors, options, set(self.differentiable), times)
                if fused is None:
                    for name in self.differentiable:
                        tensors[name].requires_grad_(True)
                taken = dict(tensors)
                if raw is not None:
                    taken[first] = convert.tensor(
                        torch, spec, self.convert_from, tensors[first], self.convert_dtype
                    )
                try:
                    if fused is not None:  # the loss and its gradient in one pass
                        elements, grads = fused
                    else:
                        elements = loss_fn(*(taken[n] for n in spec.input_names))
                    summed = elements
                    if scale is not None:
                        summed = elements * _to_tensor(torch, scale[rows], device, dtype)
                    if self.differentiable and fused is None:
                        summed.sum(dtype=self.sum_dtype).backward()
                        grads = {name: tensors[name].grad for name in self.differentiable}
                except (RuntimeError, NotImplementedError) as error:
                    if "not implemented for" not in str(error):
                        raise
                    raise OptionError(
                        f"--dtype {self.dtype} is not supported by {spec.torch_class} on "
                        f"{device.type} in this torch build ({str(error).splitlines()[0]})"
                    ) from None
                # The losses on the host in float64, converted once: where no scale applies,
                # the values summed are the unreduced loss the views keep.
                buffer = self._wide_buffer(len(self.last_rows), summed.numel())
                scaled = _host_float64(torch, summed.detach(), self.sum_dtype, buffer)
                self.sums.add(scaled)
                if self.keep_elements:
                    wide = (
                        scaled
                        if scale is None
                        else _host_float64(torch, elements.detach(), self.sum_dtype)
                    )
                    self._keep(wide, tuple(elements.shape))
                if self.mean:
                    self.denominators.add(
                        spec.mean_denominator(
                            chunk, prepared.options, self.reduction, elements.numel()
                        )
                        if spec.mean_denominator
                        else elements.numel()
                    )
                for name in self.differentiable:
                    host = grads[name].to(
                        torch.float64 if self.dtype == "float64" else torch.float32
                    )
                    if fused is None and times != 1.0:
                        host.mul_(times)
                    if len(chunks) > 1:
                        gradients[name][rows] = host.cpu().numpy()
                    else:
                        gradients[name] = host.cpu().numpy()
                wanted = None if self.reduction == "none" else self.keep_rows - self.kept_rows
                if wanted is None or wanted > 0:
                    values = np.atleast_1d(elements.detach()[:wanted].double().cpu().numpy())
                    self.kept.append(values)
                    self.kept_rows += len(values)
        self.compute_s += time.perf_counter() - started
        return gradients

    def _keep(self, wide: np.ndarray, shape: tuple) -> None:
        """Count a chunk's unreduced loss (``wide``: flat float64 on the host, of ``shape``)
        and keep it and its rows' losses (in NumPy: one thread, a fixed order, the same
        digits every run)."""
        self.count += wide.size
        self.squares += float(np.einsum("i,i->", wide, wide))
        self.last_elements.append(wide)
        self.last_rows.append(shape[0] if shape else 1)
        self.last_shape = (sum(self.last_rows), *shape[1:]) if shape else ()

    def _wide_buffer(self, index: int, size: int):
        """The float64 buffer of a block's ``index``-th chunk, kept from block to block (a
        new array of a chunk's size costs its page faults: 1.6 GB of them for 200M losses).
        Its values live until the next block: the views and the sums take them before."""
        torch = self.torch
        while len(self._wide) <= index:
            self._wide.append(None)
        if self._wide[index] is None or self._wide[index].numel() < size:
            self._wide[index] = torch.empty(max(size, self.chunk_elements), dtype=torch.float64)
        return self._wide[index]

    def last_row_losses(self):
        """A function that gives the loss of each row of the block just computed (the sum of
        its elements): called by the views that need it (a pass over every element that the
        others skip), whenever they do (the block's lists are new lists for each block)."""
        elements, counts, whole = self.last_elements, self.last_rows, bool(self.last_shape)

        def rows() -> np.ndarray:
            sums = [
                wide.reshape(count, -1).sum(1) if whole else wide.reshape(1)
                for wide, count in zip(elements, counts, strict=True)
            ]
            return sums[0] if len(sums) == 1 else np.concatenate(sums)

        return rows

    @property
    def total(self) -> float:
        """The float64 sum of the (scaled) per-element losses so far."""
        return self.sums.value

    @property
    def denominator(self) -> float:
        """What a mean divides the sum by, so far (0.0 for other reductions)."""
        return self.denominators.value

    @property
    def factor(self) -> float:
        """What every gradient of a sum is multiplied by: 1/denominator for a mean. A mean
        over nothing (every target ignored, or zero total weight) is NaN, as in torch; its
        gradient is 0 (torch's too where every target is ignored)."""
        if not self.mean:
            return 1.0
        return 1.0 / self.denominator if self.denominator else 0.0

    @property
    def value(self) -> float:
        if not self.mean:
            return self.total
        return self.total / self.denominator if self.denominator else math.nan

    def output(self, gradients: dict[str, np.ndarray] | None) -> EngineOutput:
        elements = np.concatenate(self.kept) if self.kept else np.empty(0)
        return EngineOutput(
            value=elements if self.reduction == "none" else self.value,
            total=self.total,
            denominator=self.denominator if self.mean else math.nan,
            gradients=gradients,
            elements=elements,
            device=str(self.device),
            compute_s=self.compute_s,
        )


def _host_float64(torch, tensor, sum_dtype, buffer=None) -> np.ndarray:
    """A tensor's values as a flat float64 NumPy array on the host (through ``sum_dtype``
    on the device: MPS has no float64); on the CPU, into ``buffer`` where given."""
    flat = tensor.reshape(-1)
    if buffer is not None and flat.device.type == "cpu":
        return buffer[: flat.numel()].copy_(flat).numpy()
    return flat.to(sum_dtype).cpu().numpy().astype(np.float64, copy=False)


def run(spec: LossSpec, prepared: Prepared, **settings) -> EngineOutput:
    """Compute the loss (and the gradients of its float inputs) of one whole input;
    ``settings`` are BlockRun's."""
    block_run = BlockRun(spec, **settings)
    gradients = block_run.add(prepared)
    factor = block_run.factor
    if factor != 1.0:
        for g in gradients.values():
            np.multiply(g, factor, out=g)
    return block_run.output(gradients if settings.get("grad", True) else None)


def sample_mask(count: int, chunk: dict, options: dict):
    """Which of a chunk's ``count`` unreduced-loss elements are samples: those whose class
    target is not the --ignore-index (None: all of them)."""
    targets = chunk.get("targets")
    ignore_index = options.get("ignore_index")
    if targets is None or ignore_index is None or np.size(targets) != count:
        return None
    targets = np.asarray(targets)
    if targets.dtype.kind not in "iu":
        return None
    return targets.reshape(-1) != ignore_index


class GradientStats:
    """Count, sum, sum of squares, min and max of a gradient, accumulated in float64 block by
    block (in torch, on every core), of the values as computed (and written); ``summary``
    scales them by the factor those values are still to be multiplied by."""

    def __init__(self, shape: list, scale: float = 1.0) -> None:
        self.shape = shape
        # The values taken are the gradient of ``scale`` times the sum (the factor the run
        # expected when it computed them).
        self.scale = scale
        self.count, self.total, self.squares = 0, 0.0, 0.0
        self.low, self.high = math.inf, -math.inf
        self.dtype = np.dtype(np.float64)  # the gradient's, as computed and written
        self._buffer = None

    def add(self, gradient: np.ndarray, block: int = 1 << 20) -> None:
        torch = import_torch()
        self.dtype = gradient.dtype
        flat = torch.from_numpy(np.ascontiguousarray(gradient).reshape(-1))
        if self._buffer is None or self._buffer.numel() < min(block, flat.numel()):
            self._buffer = torch.empty(min(block, flat.numel()), dtype=torch.float64)
        buffer = self._buffer  # kept from block to block: no new pages to fault in
        for start in range(0, flat.numel(), block):
            part = flat[start : start + block]
            wide = buffer[: part.numel()].copy_(part)
            self.squares += float(torch.dot(wide, wide))
            self.total += float(wide.sum())
            low, high = torch.aminmax(part)
            self.low = float(np.minimum(self.low, float(low)))  # NaN propagates, as it should
            self.high = float(np.maximum(self.high, float(high)))
        self.count += flat.numel()

    def summary(self, factor: float = 1.0, written=None) -> dict:
        """Shape, L2 norm, mean, min and max of the gradient times ``factor`` (>= 0). The
        norm and mean are of the float64 partials; the min and max are the values the
        gradient arrays and --grad-out hold, in their dtype: ``written`` maps a value as
        computed to what the file holds (by default, one multiplication by the factor in the
        gradient's dtype, as the arrays are scaled)."""
        count = self.count
        if written is None:
            written = partial(scaled_as_stored, self.dtype, factor)
        with np.errstate(invalid="ignore", over="ignore"):
            low, high = written(self.low), written(self.high)
        return {
            "shape": list(self.shape),
            "norm": math.sqrt(self.squares) * factor,
            "mean": self.total * factor / count if count else math.nan,
            "min": low if count else math.nan,
            "max": high if count else math.nan,
        }


def gradient_summary(gradient: np.ndarray) -> dict:
    """Shape, L2 norm, mean, min and max of a gradient, accumulated in float64 by blocks."""
    stats = GradientStats(list(gradient.shape))
    stats.add(gradient)
    return stats.summary()
