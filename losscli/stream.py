"""Inputs as blocks of rows: every input read in lockstep, one block of each at a time.

A run never holds more than a block of each input (and the next block, read ahead so that a
block knows whether it is the last): what is in memory does not grow with the number of
rows. ``lockstep`` aligns the blocks of inputs that come in different block sizes (a text
chunk, a Parquet row group, a slice of an NPY file) and refuses inputs whose row counts
differ, counting the rows of both so that the message gives them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

from losscli.errors import InputError
from losscli.io.common import InputArray


def _shifted(item: InputArray, start: int, count: int) -> InputArray:
    """Rows ``start:start+count`` of a block, which still knows where they came from."""
    if start == 0 and count == len(item.array):
        return item
    line_of_row = item.line_of_row
    if line_of_row is not None:
        line_of_row = _shift_lines(line_of_row, start)
    return dataclasses.replace(
        item,
        array=item.array[start : start + count],
        row_offset=item.row_offset + start,
        line_of_row=line_of_row,
    )


def _shift_lines(line_of_row, start: int):
    return lambda row: line_of_row(row + start)


class _Input:
    """One group of inputs read together (one source, or a single-file pair), one block
    ahead."""

    def __init__(self, names: list[str], label: str, blocks: Iterator[list[InputArray]]):
        self.names, self.label = names, label
        self.blocks = blocks
        self.ahead = next(blocks, None)
        self.current: list[InputArray] | None = None
        self.position = 0
        self.rows = 0  # rows taken so far
        self.first: list[InputArray] | None = None

    def take(self) -> bool:
        """Move to the next block; False when there is none."""
        block, self.ahead = self.ahead, None
        if block is not None:
            self.ahead = next(self.blocks, None)
            if self.ahead is None and block[0].row_offset == 0 and block[0].array.ndim:
                # The first block is the last: the source's row count is known.
                block = [dataclasses.replace(b, rows=len(b.array)) for b in block]
        self.current, self.position = block, 0
        if self.first is None:
            self.first = block
        if block is not None:
            self.rows += len(block[0].array) if block[0].array.ndim else 0
        return block is not None

    @property
    def left(self) -> int:
        return len(self.current[0].array) - self.position

    def count_the_rest(self) -> int:
        """Every row of this input, reading (not keeping) the blocks not yet taken."""
        rows = self.rows
        if self.ahead is not None:
            rows += len(self.ahead[0].array)
            self.ahead = None
        for block in self.blocks:
            rows += len(block[0].array)
        return rows


Group = tuple[list[str], str, Iterator[list[InputArray]]]


def lockstep(groups: list[Group]):
    """Blocks of every input with the same rows: yields {input name: InputArray}. Where each
    input is one block, they are given as read (the loss's own checks compare the shapes); a
    0-d input (one value for every row) goes with every block. Inputs split into blocks
    whose row counts differ are refused with both shapes, once the shorter one ends."""
    inputs = [_Input(names, label, blocks) for names, label, blocks in groups]
    for item in inputs:
        item.take()
    constant = [item for item in inputs if item.current[0].array.ndim == 0]
    rowed = [item for item in inputs if item.current[0].array.ndim > 0]
    if all(item.ahead is None for item in inputs):
        # One block each: the loss's own checks compare the shapes and say what it accepts.
        yield {n: a for item in inputs for n, a in zip(item.names, item.current)}
        return
    while True:
        count = min(item.left for item in rowed)
        block: dict[str, Any] = {}
        for item in constant:
            block.update(zip(item.names, item.current))
        for item in rowed:
            for name, array in zip(item.names, item.current):
                block[name] = _shifted(array, item.position, count)
            item.position += count
        yield block
        ended = [item for item in rowed if item.left == 0 and not item.take()]
        if len(ended) == len(rowed):
            return
        if ended:
            _different_rows(rowed)


def _different_rows(inputs: list[_Input]) -> None:
    counts = [(item.names[0], item.label, item.count_the_rest()) for item in inputs]
    shapes = [[rows, *item.first[0].array.shape[1:]] for (*_, rows), item in zip(counts, inputs)]
    described = ", ".join(
        f"{name} ({label}) has {rows} (shape {shape})"
        for (name, label, rows), shape in zip(counts, shapes)
    )
    rows = [rows for *_, rows in counts]
    hint = ""
    longest = inputs[rows.index(max(rows))]
    if max(rows) - min(rows) == 1 and longest.first[0].info.get("header") is False:
        name = longest.label
        hint = f" (if line 1 of {name} is a header, write {name}?header=yes)"
    raise InputError(
        f"inputs have different numbers of rows: {described}; every input needs one row per "
        f"sample{hint}"
    )


def whole(first: dict[str, InputArray], rest: Iterator[dict[str, InputArray]]):
    """The first block and every later one joined: for what needs the whole input at once."""
    from losscli.io import join_blocks

    blocks = [first, *rest]
    if len(blocks) == 1:
        return first
    rowed = [n for n, item in first.items() if item.array.ndim]
    joined = join_blocks([[block[n] for n in rowed] for block in blocks])
    return {**first, **dict(zip(rowed, joined))}
