"""The input layer: sources opened once, one reader per format, atomic writes.

``SourceSet`` opens every source (and remembers the identity of each file read);
``read_source`` reads one opened source into one InputArray per request (two in
single-file mode, from one read); ``read_input`` does both for one source argument.
The formats are declared in ``losscli.io.formats``, one module each.

Names are imported when first used, so that ``losscli.io.formats`` (the --input-format
choices) can be imported without NumPy.
"""

from __future__ import annotations

import importlib

_HOMES = {
    "Blocks": "common",
    "InputArray": "common",
    "ReadOptions": "common",
    "Request": "common",
    "Source": "sources",
    "SourceSet": "sources",
    "parse_source": "sources",
    "parse_columns": "columns",
    "check_output_path": "write",
    "check_output_shape": "write",
    "refuse_same_file": "write",
    "write_array": "write",
    "join_blocks": "read",
    "open_blocks": "read",
    "read_input": "read",
    "read_source": "read",
    "read_vector": "read",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value
    return value
