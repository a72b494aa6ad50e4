"""Whether pyarrow, quoting on, finds the cells that the Python parser finds in a chunk of CSV.

The Python parser (``csv``, strict, one line at a time) and pyarrow's reader agree on a row
whose quotes are whole cells: a quote opens a cell right after a delimiter or at the start of
a line, and the next quote closes it on the same line, right before a delimiter or the end of
the line. Elsewhere they differ: pyarrow reads on after a closing quote (``"1.5"0`` is 1.50
to it, malformed to Python) and across line breaks (a quoted cell spanning two lines; Python
refuses the first line). ``""`` escapes are left to the Python parser as well. A quote inside
an unquoted cell (``a"b``) is text to both, but the check below leaves it to Python too.
"""

from __future__ import annotations

import numpy as np

QUOTE, LF, CR = ord('"'), ord("\n"), ord("\r")


def arrow_quoting(chunk: memoryview, delimiter: str) -> bool | None:
    """False: the chunk holds no quote (pyarrow reads it with quoting off); True: its quotes
    are all whole cells (pyarrow reads it with quoting on); None: the Python parser must.
    ``delimiter`` is one ASCII character. A few vectorised passes over the bytes: no Python
    loop per cell."""
    data = np.frombuffer(chunk, np.uint8)
    quotes = np.flatnonzero(data == QUOTE)
    if not quotes.size:
        return False
    if quotes.size % 2:
        return None
    opens, closes = quotes[0::2], quotes[1::2]
    edge = np.zeros(256, dtype=bool)
    edge[[ord(delimiter), LF, CR]] = True
    last = data.size - 1
    if not (edge[data[opens - 1]] | (opens == 0)).all():
        return None  # a quote inside a cell, or one that is not the start of a quoted cell
    if not (edge[data[np.minimum(closes + 1, last)]] | (closes == last)).all():
        return None  # text after a closing quote, or a "" escape
    breaks = np.flatnonzero((data == LF) | (data == CR))
    # A line break with an odd number of quotes before it lies inside a quoted cell.
    if (np.searchsorted(quotes, breaks) % 2).any():
        return None
    return True
