"""Column selection (``--pred-cols``, ``--target-cols``): tokens, names, indices and ranges.

A token is a column name when the header has that name, and a 0-based index (or a range
``1:4``, end excluded) otherwise. A token that could be both is refused as ambiguous;
``name:X`` and ``index:N`` say which is meant.
"""

from __future__ import annotations

from losscli.errors import OptionError


def parse_columns(text: str | None) -> tuple[str, ...] | None:
    """Split a --pred-cols / --target-cols value into column tokens."""
    if text is None:
        return None
    tokens = tuple(t.strip() for t in text.split(","))
    if not all(tokens):
        raise OptionError(f"column list {text!r} has an empty entry; expected names or indices")
    return tokens


def _as_index(token: str) -> int | None:
    return int(token) if token.isascii() and token.isdigit() else None


def _as_range(token: str) -> range | None:
    start, sep, stop = token.partition(":")
    if not sep:
        return None
    low, high = _as_index(start), _as_index(stop)
    if low is None or high is None:
        return None
    return range(low, high)


def _available(names: list[str] | None, width: int) -> str:
    if names:
        return ", ".join(repr(n) for n in names) + f" (indices 0..{width - 1})"
    return f"indices 0..{width - 1} (no header)"


def resolve_columns(
    tokens: tuple[str, ...], names: list[str] | None, width: int, label: str
) -> list[int]:
    """The 0-based file columns that ``tokens`` select."""
    selected: list[int] = []
    for token in tokens:
        selected.extend(_resolve(token, names, width, label))
    return selected


def _by_name(token: str, name: str, names: list[str] | None, width: int, label: str) -> int:
    matches = [i for i, n in enumerate(names or []) if n == name]
    if not matches:
        raise OptionError(
            f"{label}: no column named {name!r}; available: {_available(names, width)}"
        )
    if len(matches) > 1:
        raise OptionError(
            f"{label}: {len(matches)} columns are named {name!r} (indices "
            f"{', '.join(map(str, matches))}); select one with index:N"
        )
    return matches[0]


def _by_index(token: str, index: int, names: list[str] | None, width: int, label: str) -> int:
    if not 0 <= index < width:
        available = _available(names, width)
        raise OptionError(
            f"{label}: column index {token!r} is out of range; available: {available}"
        )
    return index


def _resolve(token: str, names: list[str] | None, width: int, label: str) -> list[int]:
    kind, sep, rest = token.partition(":")
    if sep and kind == "name":
        return [_by_name(token, rest, names, width, label)]
    if sep and kind == "index":
        index = _as_index(rest)
        if index is None:
            raise OptionError(f"{label}: column {token!r}: index: needs a number such as index:2")
        return [_by_index(token, index, names, width, label)]
    is_name = names is not None and token in names
    index, span = _as_index(token), _as_range(token)
    if is_name and (index is not None or span is not None):
        raise OptionError(
            f"{label}: column {token!r} is ambiguous: the header has a column of that name and "
            f"it reads as an index too; write name:{token} or index:{token}"
        )
    if is_name:
        return [_by_name(token, token, names, width, label)]
    if index is not None:
        return [_by_index(token, index, names, width, label)]
    if span is not None:
        if not span or span.stop > width:
            raise OptionError(
                f"{label}: column range {token!r} is empty or out of range; available: "
                f"{_available(names, width)}"
            )
        return list(span)
    raise OptionError(f"{label}: no column {token!r}; available: {_available(names, width)}")
