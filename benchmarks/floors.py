"""What this machine can do, measured in the same run as the cases: the memory copy rate, the
exp rate of one core and each fused kernel's elements per second (against autograd's), and the
floor of a big-file case (the bytes it must read and write at the copy rate, plus the exps at
the exp rate, plus torch's import)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np


def best_of(function, repeats: int = 5) -> float:
    """The least wall time of ``repeats`` calls (the machine's rate, not its noise)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def copy_rate() -> float:
    """Bytes per second of a 256 MB memory copy (read and written: counted once)."""
    source = np.ones(1 << 25, dtype=np.float64)
    target = np.empty_like(source)
    return source.nbytes / best_of(lambda: np.copyto(target, source))


def exp_rate(torch) -> float:
    """exps per second on one core (torch, float32, in place)."""
    values = torch.randn(1 << 22)
    out = torch.empty_like(values)
    with_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return values.numel() / best_of(lambda: torch.exp(values, out=out))
    finally:
        torch.set_num_threads(with_threads)


def import_seconds(python: str) -> float:
    """The least wall time of ``python -c "import numpy, torch"``."""

    def once():
        subprocess.run([python, "-c", "import numpy, torch"], check=True)

    return best_of(once, 3)


def kernel_rates(torch, rows: int = 2_000_000, width: int = 10) -> list[tuple[str, float, float]]:
    """(loss, fused elements/s, autograd elements/s): each fused kernel (loss and gradient of
    the mean) against autograd on the loss's own torch forward, on rows x width float32."""
    from losscli.registry import get_spec

    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(rows, width, generator=generator)
    labels = torch.randint(0, width, (rows,), generator=generator)
    uniform = torch.rand(rows, width, generator=generator)
    normal = torch.randn(rows, width, generator=generator)
    cases = {
        "ce": (logits, labels, {"weight": None, "ignore_index": -100, "label_smoothing": 0.0}),
        "nll": (torch.log_softmax(logits, 1), labels, {"weight": None, "ignore_index": -100}),
        "bce-logits": (logits, uniform, {"weight": None, "pos_weight": None}),
        "bce": (torch.sigmoid(logits), uniform, {"weight": None}),
        "mse": (logits, normal, {}),
        "l1": (logits, normal, {}),
        "huber": (logits, normal, {"delta": 1.0}),
        "smooth-l1": (logits, normal, {"beta": 1.0}),
    }
    out = []
    for name, (x, y, options) in cases.items():
        spec = get_spec(name)
        tensors = {"predictions": x, "targets": y}

        def fused(spec=spec, tensors=tensors, options=options):
            with torch.no_grad():
                spec.fused(torch, dict(tensors), options, {"predictions"}, 1.0 / rows)

        def autograd(spec=spec, x=x, y=y, options=options):
            leaf = x.detach().requires_grad_(True)
            (spec.unreduced(torch, options)(leaf, y).sum() / rows).backward()

        out.append((name, x.numel() / best_of(fused, 3), x.numel() / best_of(autograd, 3)))
    return out


def cuda_ce_rates(torch, rows: int = 10_000_000, width: int = 10) -> tuple[float, float]:
    """(fused, autograd) elements/s of ce's loss and gradient on the GPU: 1e8 elements."""
    from losscli.registry import get_spec

    spec = get_spec("ce")
    x = torch.randn(rows, width, device="cuda")
    y = torch.randint(0, width, (rows,), device="cuda")
    options = {"weight": None, "ignore_index": -100, "label_smoothing": 0.0}

    def fused():
        with torch.no_grad():
            spec.fused(torch, {"predictions": x, "targets": y}, options, {"predictions"}, 1 / rows)
        torch.cuda.synchronize()

    def autograd():
        leaf = x.detach().requires_grad_(True)
        torch.nn.functional.cross_entropy(leaf, y).backward()
        torch.cuda.synchronize()

    fused(), autograd()  # the first launches compile nothing, but load the kernels
    return x.numel() / best_of(fused), x.numel() / best_of(autograd)


def measure(python: str) -> dict:
    import torch

    return {
        "copy_bytes_s": copy_rate(),
        "exp_s": exp_rate(torch),
        "import_s": import_seconds(python),
        "kernels": kernel_rates(torch),
        "cuda_ce": cuda_ce_rates(torch) if torch.cuda.is_available() else None,
    }


def floor_seconds(machine: dict, read_bytes: int, write_bytes: int, exps: int) -> float:
    """The least time a run that reads and writes these bytes and computes these exps can
    take here: the bytes at the copy rate, the exps at one core's rate, and torch's import."""
    return (
        (read_bytes + write_bytes) / machine["copy_bytes_s"]
        + exps / machine["exp_s"]
        + machine["import_s"]
    )


if __name__ == "__main__":
    found = measure(sys.executable)
    if "--json" in sys.argv:  # for benchmarks/run.py, which measures in a child process
        print(json.dumps(found))
        raise SystemExit(0)
    print(f"memory copy {found['copy_bytes_s'] / 1e9:.2f} GB/s, exp {found['exp_s'] / 1e6:.0f} M/s")
    print(f"import numpy, torch {found['import_s']:.2f} s")
    for name, fused, autograd in found["kernels"]:
        print(f"{name:12} fused {fused / 1e6:7.1f} M/s  autograd {autograd / 1e6:7.1f} M/s")
    if found["cuda_ce"]:
        fused, autograd = found["cuda_ce"]
        print(
            f"ce on CUDA, 1e8 elements: fused {fused / 1e9:.2f} G/s, "
            f"autograd {autograd / 1e9:.2f} G/s"
        )
