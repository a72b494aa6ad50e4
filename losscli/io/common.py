"""What every reader shares: the array an input is read into, and where its rows came from."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from losscli.errors import InputError

# Elements (rows x columns) of an input in one block of rows, unless --block-rows says:
# 4M float32 values are 16 MB, and a block's work in torch takes a few times that.
BLOCK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class Blocks:
    """How many rows a block of an input holds: ``rows`` (--block-rows), else as many as
    make ``elements`` values for an input ``width`` values wide."""

    rows: int | None = None
    elements: int = BLOCK_ELEMENTS

    def for_width(self, width: int) -> int:
        return self.rows or max(1, self.elements // max(width, 1))


def block_rows(blocks: Blocks | None, width: int) -> int | None:
    """Rows per block for an input ``width`` values wide; None reads it whole."""
    return None if blocks is None else blocks.for_width(width)


@dataclass(frozen=True)
class ReadOptions:
    """How one input is read: format, text delimiter, header. None means detected."""

    input_format: str | None = None
    delimiter: str | None = None
    header: bool | None = None
    # One row group of a Parquet file, or rows [start, stop) of an NPY file (a task of a
    # --dask run reads one).
    row_group: int | None = None
    rows: tuple[int, int] | None = None


@dataclass(frozen=True)
class Request:
    """One input wanted from a source: its columns, and how its cells may be read.

    ``names`` lets non-numeric text cells through as strings (class names); ``float_dtype``
    is the NumPy dtype float cells are kept in (float32 when the compute dtype is narrower
    than float64; values that float32 cannot hold keep float64 so that checks can name them).
    """

    columns: tuple[str, ...] | None = None
    names: bool = False
    float_dtype: Any = np.float64


@dataclass
class InputArray:
    """One input as read: its array, where it came from, and what was decided while reading.

    ``info`` holds the reading decisions reported in JSON (format, header, index column);
    ``line_of_row`` turns a 0-based data row of a text input into its 1-based line number;
    ``file_columns`` maps the array's columns to the columns of the file (for messages).
    A block of a larger input starts at data row ``row_offset`` of its source (messages
    count rows from the source's first); ``rows`` is the source's row count where known.
    """

    source: str
    array: np.ndarray
    header: list[str] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    line_of_row: Callable[[int], int] | None = field(default=None, repr=False)
    file_columns: list[int] | None = None
    row_offset: int = 0
    rows: int | None = None
    # For blocks joined into one array: row -> (the block's InputArray, row in that block).
    locate: Callable[[int], tuple[Any, int]] | None = field(default=None, repr=False)
    # (the array, its extremes) once ``extremes`` has computed them.
    _extremes: tuple | None = field(default=None, repr=False, compare=False)

    def extremes(self) -> tuple[Any, Any] | None:
        """The min and max of a numeric array (NaN where it holds a NaN: min and max
        propagate it), computed once for the array, whichever thread asks first (a run
        asks for the next block's on a thread while it computes this one); None where the
        array is empty or not numeric. The value checks answer from them where the data
        are clean (finite, in range) and look at every element only where they are not."""
        array = self.array
        cached = self._extremes
        if cached is not None and cached[0] is array:
            return cached[1]
        found = None
        if array.dtype.kind in "biuf" and array.size:
            found = (array.min(), array.max())
        self._extremes = (array, found)
        return found

    def within(self, low, high) -> bool:
        """Whether every value lies in [low, high], by the extremes (False where the array
        is empty, not numeric, or holds a NaN)."""
        extremes = self.extremes()
        return extremes is not None and bool(low <= extremes[0] and extremes[1] <= high)

    @property
    def shape(self) -> list:
        """The input's shape as messages show it: the whole source's where its row count is
        known, else the block's with "N" rows (a block cannot say how many rows follow)."""
        shape = list(self.array.shape)
        if shape and (self.row_offset or self.rows != shape[0]):
            shape[0] = self.rows if self.rows is not None else "N"
        return shape

    def where(self, index) -> str:
        """Where element ``index`` (an int row or a tuple) is, for error messages."""
        index = tuple(int(i) for i in np.atleast_1d(index))
        row = index[0] if index else 0
        if self.locate is not None:
            block, local = self.locate(row)
            return block.where((local, *index[1:]))
        text = f"{self.source}, row {row + self.row_offset + 1}"
        if self.line_of_row is not None:
            text += f" (line {self.line_of_row(row)}"
            if len(index) > 1 or self.file_columns is not None:
                column = index[1] if len(index) > 1 else 0
                if self.file_columns is not None and column < len(self.file_columns):
                    column = self.file_columns[column]
                text += f", column {column + 1}"
            text += ")"
        elif len(index) > 1:
            text += f", index {[row + self.row_offset, *index[1:]]}"
        return text

    def with_array(self, array: np.ndarray) -> InputArray:
        """A copy of this input holding ``array`` (the reading decisions stay)."""
        return dataclasses.replace(self, array=array)


class Note(str):
    """A warning about one input, ``LABEL: detail``, that a run says once for every input
    with the same detail (``a.csv, b.csv: column 0 ...``): see ``validate.Context.warn``."""

    label: str
    detail: str

    def __new__(cls, label: str, detail: str) -> Note:
        note = super().__new__(cls, f"{label}: {detail}")
        note.label, note.detail = label, detail
        return note


def concat_rows(arrays: list[np.ndarray]) -> np.ndarray:
    """Arrays joined along the first axis; where some hold class names and others numbers
    (a text column whose names appear only in some chunks), the numbers are written as text
    first, as they were in the file (%.17g gives back "2" for 2.0)."""
    if len(arrays) == 1:
        return arrays[0]
    if any(a.dtype.kind == "U" for a in arrays):
        arrays = [a if a.dtype.kind == "U" else np.char.mod("%.17g", a) for a in arrays]
    return np.concatenate(arrays)


def invalid(label: str, kind: str, error: Exception | str | None = None) -> InputError:
    """The error for a file that is not a valid (or safe) file of its format."""
    detail = str(error).strip().splitlines()[0] if error is not None and str(error) else ""
    return InputError(f"{label}: not a valid {kind} file" + (f" ({detail})" if detail else ""))


def narrow(array: np.ndarray, float_dtype) -> np.ndarray:
    """Float64 values in ``float_dtype``, unless that would turn a finite value into inf.

    Values out of float32's range keep float64, so that the finite-value check can name them.
    """
    if float_dtype == np.float64 or array.dtype != np.float64:
        return array
    with np.errstate(over="ignore"):
        narrowed = array.astype(float_dtype)
    if np.isinf(narrowed).any() and not np.array_equal(np.isinf(narrowed), np.isinf(array)):
        return array
    return narrowed


class ReadAhead:
    """``read(start)`` on another thread (reads, pyarrow's parsing and NumPy's reductions
    release the GIL): an NPY block or a CSV chunk read while the run works on the one before
    (and while torch imports); ``result`` waits for it and gives the block, or raises what
    the read raised. A read nobody waits for ends on its own."""

    def __init__(self, read, start: int):
        import threading

        self.block = self.error = None
        self.done = threading.Event()
        _WORKERS.run(self._run, read, start)

    def _run(self, read, start: int) -> None:
        try:
            self.block = read(start)
        except BaseException as error:  # raised again by ``result``
            self.error = error
        finally:
            self.done.set()

    def result(self):
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.block


class _Workers:
    """Daemon threads that run jobs handed to them, kept from job to job: a new thread for
    each block of a run costs its start (the caller waits for the new thread to take the
    GIL), 5-10 ms each on a busy machine. A job goes to an idle thread, or to a new one
    where every thread is busy (jobs never wait for each other)."""

    def __init__(self) -> None:
        import os

        self._forget()
        if hasattr(os, "register_at_fork"):  # a forked child has none of its parent's threads
            os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        import threading

        self.lock = threading.Lock()
        self.idle: list = []  # the job queue of each idle thread

    def run(self, job, *args) -> None:
        import queue
        import threading

        with self.lock:
            jobs = self.idle.pop() if self.idle else None
        if jobs is None:
            jobs = queue.SimpleQueue()
            threading.Thread(target=self._serve, args=(jobs,), name="losscli-ahead",
                             daemon=True).start()  # fmt: skip
        jobs.put((job, args))

    def _serve(self, jobs) -> None:
        while True:
            job, args = jobs.get()
            job(*args)
            del job, args  # an idle thread keeps nothing of the block it read
            with self.lock:
                self.idle.append(jobs)


_WORKERS = _Workers()


def worked_ahead(items, work):
    """(*item, ``work(*item)``) for each item (a tuple), the next item's work running on a
    thread of its own while this one is used (a CSV chunk parsed by pyarrow, which releases
    the GIL, while the run computes the block before and torch imports). Each item must be
    data of its own (not a buffer that the next item reuses). An error raised while the next
    item is taken is raised once this one has been used: an error in a later block never
    comes before one in this block, nor before the first block's refusals."""
    pending = None
    items = iter(items)
    while True:
        try:
            item = next(items)
        except StopIteration:
            break
        except Exception as error:
            if pending is not None:
                yield *pending[0], pending[1].result()
            raise error
        job = ReadAhead(lambda _, item=item: work(*item), 0)
        if pending is not None:
            yield *pending[0], pending[1].result()
        pending = (item, job)
    if pending is not None:
        yield *pending[0], pending[1].result()
