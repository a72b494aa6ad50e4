"""losscli: PyTorch losses and their gradients from files, stdin or arrays.

``import losscli`` stays light: torch is imported only when a loss is computed.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["compute", "compute_files", "__version__"]


def compute(loss: str, *inputs: Any, **settings_and_options: Any):
    """Compute ``loss`` (a command name such as ``"ce"``) on NumPy arrays or array-likes.

    Inputs come in the order of the torch loss's ``forward``. Settings: ``reduction``
    ("mean"), ``device`` ("cpu"), ``dtype`` ("float32"), ``grad`` (True),
    ``allow_nonfinite`` (False), ``classes`` (names of class-name targets); the loss's
    options go by their torch names (``weight``, ``ignore_index``, ``label_smoothing``, ...).
    Returns a Result: ``.value``, ``.gradients`` (full NumPy arrays by input name, or None
    with ``grad=False``), and ``.to_dict()``, the JSON object the CLI prints. Bad input raises
    ``losscli.errors.LossCliError``.

    >>> import losscli
    >>> losscli.compute("mse", [1.0, 2.0], [1.0, 4.0]).value
    2.0
    """
    from losscli.api import compute as _compute

    return _compute(loss, *inputs, **settings_and_options)


def compute_files(loss: str, *sources: str, stdin=None, **settings_and_options: Any):
    """Compute ``loss`` from files (paths, ``-``, ``file.npz:key``, ``file.csv?header=no``)
    exactly as the command line does.

    Common options go by their long names (``dtype``, ``pred_cols``, ``grad_out``,
    ``fail_above``...), loss options by their torch names (``weight`` may be a file);
    ``stdin`` is a binary file that a source ``-`` reads.
    Returns a Result; ``result.gate`` says whether a gate tripped. Bad input raises
    ``losscli.errors.LossCliError``.
    """
    from losscli.api import compute_files as _compute_files

    return _compute_files(loss, *sources, stdin=stdin, **settings_and_options)
