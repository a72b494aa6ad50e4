"""A float64 sum that gives the same bits however its values arrive.

A loss's value is a sum of per-element losses divided by a denominator. Summed block by block
(``total += block.sum()``), the last digits depend on where the blocks end and, for a
multi-threaded sum, on the number of threads. ``OrderedSum`` fixes both: the values are cut
into chunks of ``CHUNK`` consecutive values counted from the first value of the stream
(whatever the blocks they came in), each chunk is summed by one NumPy call of one shape, and
the chunk sums are added exactly (as integers in units of the smallest float64). The result
is the correctly rounded sum of the chunk sums: bit-identical for the same values in the same
order, for any block sizes, reader chunking and thread count.
"""

from __future__ import annotations

import math

import numpy as np

CHUNK = 4096
# Every finite float64 is an integer multiple of 2**-1074 (the smallest subnormal).
_SCALE_BITS = 1074


class OrderedSum:
    """The sum of float64 values added in blocks of any size (see the module's text)."""

    def __init__(self) -> None:
        self.pending = np.empty(0, dtype=np.float64)  # the values of the unfinished chunk
        self.exact = 0  # the finite chunk sums, in units of 2**-1074
        self.special = 0.0  # the sum of the chunk sums that are NaN or infinite

    def add(self, values) -> None:
        """Add a block of values (any shape; taken flat, in order)."""
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        if self.pending.size:
            fill = CHUNK - self.pending.size
            self.pending = np.concatenate([self.pending, values[:fill]])
            values = values[fill:]
            if self.pending.size < CHUNK:
                return
            self._add_chunks(self.pending.reshape(1, CHUNK))
            self.pending = np.empty(0, dtype=np.float64)
        whole = values.size - values.size % CHUNK
        if whole:
            self._add_chunks(values[:whole].reshape(-1, CHUNK))
        if whole < values.size:
            self.pending = values[whole:].copy()

    def _add_chunks(self, chunks: np.ndarray) -> None:
        for chunk_sum in _chunk_sums(chunks):
            self.exact, self.special = _accumulate(self.exact, self.special, chunk_sum)

    @property
    def value(self) -> float:
        """The correctly rounded sum of the chunk sums (the unfinished chunk counted as one);
        an infinity where it overflows, NaN for inf - inf."""
        exact, special = self.exact, self.special
        if self.pending.size:
            (last,) = _chunk_sums(self.pending.reshape(1, -1))
            exact, special = _accumulate(exact, special, last)
        if special != 0.0 or math.isnan(special):
            return special
        try:
            return exact / (1 << _SCALE_BITS)
        except OverflowError:
            return math.copysign(math.inf, exact)


def _chunk_sums(chunks: np.ndarray) -> list[float]:
    """Each row's sum, by one NumPy call (the same order for a row in any block)."""
    with np.errstate(over="ignore", invalid="ignore"):  # inf and NaN are kept apart
        return chunks.sum(axis=1).tolist()


def _accumulate(exact: int, special: float, value: float) -> tuple[int, float]:
    """(exact, special) with ``value`` added: a finite value exactly, in units of 2**-1074;
    NaN and infinities to ``special``."""
    if not math.isfinite(value):
        return exact, special + value
    numerator, denominator = value.as_integer_ratio()
    return exact + (numerator << (_SCALE_BITS - denominator.bit_length() + 1)), special
