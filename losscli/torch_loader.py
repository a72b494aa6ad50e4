"""The one place torch is imported: ``import_torch`` in the foreground, ``preload_torch``
in the background while the inputs are read. A leaf module: every other module that needs
torch (the engine, --from, --check, the .pt reader) asks it, so no import cycle runs through
torch's import.
"""

from __future__ import annotations

from losscli.errors import DeviceError
from losscli.signals import check_stopped


def _quiet_threads() -> None:
    """torch's OpenMP threads sleep between operations instead of spinning (unless the
    environment says otherwise): a spinning thread takes a core from the pyarrow and NumPy
    threads that read the next block. Takes effect only before torch is imported."""
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def import_torch():
    """Import torch, turning a broken installation into a clear error."""
    _quiet_threads()
    try:
        import torch
    except ImportError as error:  # pragma: no cover - depends on the installation
        raise DeviceError(f"cannot import torch ({error}); install PyTorch first") from None
    check_stopped()  # a signal during torch's import, whose exception the import lost
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

    _quiet_threads()
    threading.Thread(target=load, name="losscli-import-torch").start()
