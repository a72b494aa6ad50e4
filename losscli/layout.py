"""Tables in a terminal narrower than they are: stacked, never cut.

Rich squeezes a table that is wider than the terminal by cutting its cells with an ellipsis
and, in the end, dropping columns. ``fit`` is applied to what losscli prints to a terminal
(piped output keeps its natural width and never comes here):

- a table that fits is printed as it is;
- a two-column field/value table without a header row (the summary of a run) keeps its
  layout and wraps its value column, long words folded, while the field column stays whole
  and at least ``FOLD_FLOOR`` columns are left for the values;
- any other table is printed stacked: its title, then one block per row, headed by the row's
  first cell (``row 3`` where that cell is a number, ``ce`` where it names the row, the
  title then saying ``(by command)``), with each other column on an indented
  ``header: value`` line; a long value wraps under itself, a value of several lines gets one
  indented line each; then its caption. A headerless table's blocks hold the values alone.

Nothing is dropped and nothing is cut; an empty cell gives no line. Cell text stays Rich Text
(never parsed as markup).
"""

from __future__ import annotations

import copy
import dataclasses

# The narrowest a folding value column may get before its table is stacked instead.
FOLD_FLOOR = 20
# Indent of a field line under its block's heading, and of the continuation of a long value.
INDENT = 2
HANG = 4
# A width that nothing losscli prints reaches: tables are measured at it.
_WIDE = 1_000_000


def fit(renderable, console):
    """``renderable`` as it should print on ``console``: itself where it fits, else wrapped or
    stacked. Groups (the steps table and its notes) are fitted part by part."""
    from rich.console import Group
    from rich.table import Table

    if isinstance(renderable, Table):
        return fit_table(renderable, console)
    if isinstance(renderable, Group):
        parts = [fit(part, console) for part in renderable.renderables]
        if all(new is old for new, old in zip(parts, renderable.renderables)):
            return renderable
        return Group(*parts, fit=renderable.fit)
    return renderable


def fit_table(table, console):
    """``table`` if it fits ``console.width``; else its value column wrapped (a headerless
    field/value table) or the table stacked."""
    width = console.width
    if needed_width(table, console) <= width:
        return table
    if len(table.columns) == 2 and not table.show_header:
        wrapped = _wrap_last_column(table)
        if needed_width(wrapped, console) <= width:
            return wrapped
    return Stacked(table)


def needed_width(table, console) -> int:
    """The narrowest width at which Rich prints ``table`` without cutting a cell.

    A column that does not wrap needs its widest cell; a column that wraps needs its longest
    word (a folding one ``FOLD_FLOOR``, or less if its cells are narrower). Rich shrinks the
    widest wrapping columns first, so where more than one column would wrap, the table needs
    its natural width.
    """
    from rich.measure import Measurement

    if table.expand:  # an expanding table fills any width: measure what it holds
        table = copy.copy(table)
        table.expand = False
    options = console.options.update_width(_WIDE)
    natural = Measurement.get(console, options, table).maximum
    saved, wrapping = 0, 0
    for column in table.columns:
        if column.width is not None or column.no_wrap:
            continue
        sizes = [Measurement.get(console, options, cell) for cell in _column_cells(table, column)]
        if not sizes:
            continue
        widest = max(size.maximum for size in sizes)
        narrowest = max(size.minimum for size in sizes)
        if column.overflow == "fold":
            narrowest = min(widest, FOLD_FLOOR)
        if column.min_width is not None:
            widest, narrowest = max(widest, column.min_width), max(narrowest, column.min_width)
        if column.max_width is not None:
            widest, narrowest = min(widest, column.max_width), min(narrowest, column.max_width)
        if narrowest < widest:
            wrapping += 1
            saved += widest - narrowest
    return natural if wrapping > 1 else natural - saved


def _column_cells(table, column) -> list:
    cells = list(column.cells)
    if table.show_header:
        cells.append(column.header)
    if table.show_footer:
        cells.append(column.footer)
    return cells


def _wrap_last_column(table):
    """A copy of ``table`` whose last column wraps, folding words longer than its width."""
    wrapped = copy.copy(table)
    *first, last = table.columns
    wrapped.columns = [*first, dataclasses.replace(last, no_wrap=False, overflow="fold")]
    return wrapped


class Stacked:
    """A table printed as one block per row (see the module's docstring)."""

    def __init__(self, table):
        self.table = table

    def __rich_console__(self, console, options):
        from rich.padding import Padding
        from rich.text import Text

        table = self.table
        width = options.max_width
        headers = [_as_text(column.header).plain for column in table.columns]
        columns = [list(column.cells) for column in table.columns]
        title = _title(table, headers[0], columns[0])
        if title is not None:
            yield _folded(title)
            yield Text()
        for number, cells in enumerate(zip(*columns)):
            if number and table.show_header:
                yield Text()  # blocks of several labelled lines: a blank line between them
            yield _folded(_heading(table, headers[0], cells[0]))
            for header, cell in zip(headers[1:], cells[1:]):
                label = Text(f"{header}: " if table.show_header and header else "")
                # A value that does not fit on its label's line goes under it, indented.
                under = HANG if label.plain else INDENT
                if not isinstance(cell, (str, Text)):
                    if label.plain:
                        yield _hanging(console, label, Text(), INDENT, HANG, width)
                    yield Padding(cell, (0, 0, 0, under))
                    continue
                value = _as_text(cell)
                if not value.plain.strip():
                    continue
                lines = value.split("\n")
                if len(lines) == 1:
                    yield _hanging(console, label, value, INDENT, HANG, width)
                    continue
                if label.plain:
                    yield _hanging(console, label, Text(), INDENT, HANG, width)
                for line in lines:
                    yield _hanging(console, Text(), line, under, under + 2, width)
        if table.caption:
            yield Text()
            yield _folded(_as_text(table.caption, table.caption_style or "table.caption"))
        yield Text()


def _title(table, header: str, cells: list):
    """The table's title, followed by ``(by HEADER)`` where some block headings are first
    cells without their header (``losscli losses (by command)``), so that no header is lost."""
    from rich.text import Text

    title = _as_text(table.title, table.title_style or "table.title") if table.title else None
    named = [cell for cell in cells if not _is_number(_as_text(cell).plain)]
    if not (table.show_header and header and named) or header in (title.plain if title else ""):
        return title
    style = table.title_style or "table.title"
    if title is None:
        return Text(f"by {header}", style=style)
    title.append(f" (by {header})", style=style)
    return title


def _heading(table, header: str, cell) -> object:
    """A block's heading: the row's first cell, after its header where the cell is a number
    (``row 3``, ``class 2``), alone where it names the row (``ce``)."""
    from rich.text import Text

    if not isinstance(cell, (str, Text)):
        return cell
    text = _as_text(cell)
    if table.show_header and header and _is_number(text.plain):
        text = Text.assemble(header, " ", text)
    text.stylize("bold")
    return text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _as_text(value, style="") -> object:
    """A title, header or cell as Text; a ``str`` is taken literally (never markup)."""
    from rich.text import Text

    if isinstance(value, Text):
        text = value.copy()
        if style:
            text.stylize(style)
        return text
    return Text(str(value), style=style)


def _folded(text):
    """``text`` wrapping at spaces, with words longer than the line folded, never cut."""
    from rich.text import Text

    if isinstance(text, Text):
        text.overflow = "fold"
        text.no_wrap = False
    return text


def _hanging(console, label, value, first: int, rest: int, width: int):
    """``label`` and ``value`` on a line indented by ``first``, wrapped within ``width``, the
    continuation lines indented by ``rest``."""
    from rich.text import Text

    text = Text.assemble(label, value)
    text.rstrip()
    lines = text.wrap(console, max(width - max(first, rest), 1), overflow="fold")
    out = Text("\n").join(
        Text(" " * (first if n == 0 else rest)) + _rstripped(line) for n, line in enumerate(lines)
    )
    out.overflow = "fold"
    return out


def _rstripped(line):
    line.rstrip()
    return line
