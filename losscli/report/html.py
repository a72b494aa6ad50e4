"""The report's HTML pieces: escaped text, numbers with their JSON value, tables, sections.

Every text from data goes through ``text`` (control characters escaped as the terminal
output does, then HTML-escaped, quotes included). Every number goes through ``number``: a
``<data>`` element whose ``value`` is the number exactly as ``-f json`` writes it and whose
``data-key`` is its path in that JSON object (``by_class.2.mean``), so that a program can
check the page against the JSON.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from typing import Any

from losscli.output import escape
from losscli.values import format_number


@dataclass
class Section:
    """One section of the report: its id (an anchor and a test's handle), heading, HTML;
    ``wide``: it spans the page's width where sections stand two by two."""

    id: str
    title: str
    body: str
    wide: bool = False


def text(value: Any) -> str:
    """Data text, safe in HTML text and attributes."""
    return html.escape(escape(str(value)), quote=True)


def number(value: Any, key: str, digits: int = 6) -> str:
    """A number (or null, or a list of numbers) as the page shows it, with its JSON."""
    exact = html.escape(json.dumps(value, allow_nan=False), quote=True)
    return f'<data value="{exact}" data-key="{text(key)}">{shown(value, digits)}</data>'


def shown(value: Any, digits: int = 6) -> str:
    """A JSON value as the page writes it: numbers short, null as a dash."""
    if value is None:
        return "\u2013"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return format_number(value, digits).replace("-", "\u2212")
    if isinstance(value, list):
        return "[" + ", ".join(shown(v, 4) for v in value) + "]"
    if isinstance(value, dict) and {"argmax", "max", "size"} <= set(value):
        return f"argmax {value['argmax']} ({shown(value['max'], 4)}) of {value['size']}"
    return text(value)


def cell(value: Any, key: str) -> str:
    """A table cell's HTML for a JSON value: numbers (and lists of them) with their JSON,
    text escaped."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return text(value) if isinstance(value, str) else shown(value)
    if isinstance(value, (int, float, list)) or (isinstance(value, dict) and "argmax" in value):
        return number(value, key)
    return text(json.dumps(value))


def table(columns: list[str], rows: list[list[str]], numeric: tuple[int, ...] = (), **attrs) -> str:
    """A table of HTML cells (already escaped) that scrolls sideways on a narrow screen;
    ``numeric``: the columns aligned right."""
    extra = "".join(f' {k}="{text(v)}"' for k, v in attrs.items())
    align = [' class="num"' if i in numeric else "" for i in range(len(columns))]
    head = "".join(f'<th scope="col"{a}>{text(c)}</th>' for a, c in zip(align, columns))
    body = "".join(
        "<tr>" + "".join(f"<td{a}>{c}</td>" for a, c in zip(align, row)) + "</tr>" for row in rows
    )
    return (
        f'<div class="scroll"><table{extra}><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def fields(rows: list[tuple[str, str]], **attrs) -> str:
    """A two-column table of field names and their HTML."""
    extra = "".join(f' {k}="{text(v)}"' for k, v in attrs.items())
    body = "".join(f'<tr><th scope="row">{text(k)}</th><td>{v}</td></tr>' for k, v in rows)
    return f'<div class="scroll"><table class="fields"{extra}><tbody>{body}</tbody></table></div>'


def facts(rows: list[tuple[str, str]]) -> str:
    """Short fields (name, HTML) as a grid of tiles."""
    items = "".join(f"<div><dt>{text(k)}</dt><dd>{v}</dd></div>" for k, v in rows)
    return f'<dl class="facts">{items}</dl>'


def figure(svg: str, caption: str) -> str:
    """A chart (SVG from ``charts``) with its caption (HTML)."""
    return f'<figure class="chart">{svg}<figcaption>{caption}</figcaption></figure>'


def note(content: str) -> str:
    return f'<p class="note">{content}</p>'


# Rows of a breakdown a table lists (the JSON has them all).
TABLE_ROWS = 500


def breakdown(rows: list[dict[str, Any]], key: str, path: str, what: str) -> str:
    """A per-class or per-group breakdown (``rows`` at ``path`` of the JSON, labelled by
    ``key``): bars of the mean loss with the counts, and the table."""
    from losscli.report import charts

    chosen = list(range(len(rows)))
    caption = f"Mean loss per {text(what)}, with its row count (n)."
    if len(rows) > charts.MAX_BARS:
        ranked = sorted(chosen, key=lambda i: -_rank(rows[i]["mean"]))
        chosen = sorted(ranked[: charts.MAX_BARS])
        caption += f" The {charts.MAX_BARS} of highest mean loss of {len(rows)}."
    svg = charts.bars(
        [rows[i][key] for i in chosen],
        [rows[i]["mean"] for i in chosen],
        [rows[i]["count"] for i in chosen],
        what,
        path,
    )
    listed = rows[:TABLE_ROWS]
    cells = [
        [
            text(row[key]) if str(row[key]) != "" else "<i>(empty)</i>",
            number(row["count"], f"{path}.{i}.count"),
            number(row["mean"], f"{path}.{i}.mean"),
            number(row["share"], f"{path}.{i}.share"),
        ]
        for i, row in enumerate(listed)
    ]
    out = figure(svg, caption) + table([what, "count", "mean loss", "share"], cells, (1, 2, 3))
    if len(rows) > len(listed):
        out += note(f"The first {len(listed)} of {len(rows)} rows; -f json has them all.")
    return out


def _rank(mean) -> float:
    return float("-inf") if mean is None else mean
