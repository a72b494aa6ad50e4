"""Result -> Rich renderables, JSON text or bare values. Render functions return; printing is
``losscli.output``'s job."""

from __future__ import annotations

import json

import numpy as np

from losscli.output import escape
from losscli.result import Result
from losscli.steps import Steps
from losscli.values import format_number

VECTOR_ENTRIES = 6


def format_cell(value) -> str:
    """Numbers, vectors (first entries) and text, as table cell text (data text escaped)."""
    if isinstance(value, str):
        return escape(value)
    if isinstance(value, np.ndarray) and value.ndim:
        flat = value.reshape(-1)
        shown = ", ".join(format_number(v, 4) for v in flat[:VECTOR_ENTRIES])
        more = ", …" if flat.size > VECTOR_ENTRIES else ""
        return f"[{shown}{more}]"
    return format_number(value)


def render_value(result: Result) -> str:
    """The loss as ``repr`` of Python floats, one per line for reduction none."""
    return "\n".join(repr(v) for v in result.values()) + "\n"


def render_json(result) -> str:
    """The JSON object of SPEC section 4, or of compare (anything with ``to_dict``; NaN/inf
    written as null)."""
    return json.dumps(result.to_dict(), indent=2, allow_nan=False) + "\n"


def _options_text(options: dict) -> str:
    if not options:
        return "none"
    parts = []
    for key, value in options.items():
        if isinstance(value, np.ndarray):
            value = format_cell(value) if value.ndim else format_number(value)
        elif isinstance(value, float):
            value = format_number(value)
        parts.append(f"{key}={value}")
    return escape(", ".join(parts))


def _reduction_text(result: Result) -> str:
    if result.reduction in ("mean", "batchmean"):
        return (
            f"{result.reduction}: sum {format_number(result.total)} / "
            f"{format_number(result.denominator)}"
        )
    if result.reduction == "none":
        return f"none: {np.asarray(result.value).size} values, shape {list(np.shape(result.value))}"
    return "sum"


def _value_text(result: Result) -> str:
    if result.reduction != "none":
        return repr(float(result.value))
    values = np.asarray(result.value, dtype=np.float64)
    if values.size == 0:
        return "(none)"
    return (
        f"min {format_number(np.nanmin(values))}, mean {format_number(np.nanmean(values))}, "
        f"max {format_number(np.nanmax(values))} (use -f value or --per-sample for each)"
    )


def _input_text(info: dict) -> str:
    text = f"{info['source']}  shape {info['shape']}, read as {info['read_as']}"
    if info.get("header"):
        text += ", header"
    if info.get("index_column") is not None:
        text += f", index column {info['index_column']!r} dropped"
    return text


def breakdown_table(title: str, key: str, count: str, rows: list[dict]):
    """A per-class or per-group table: label (``key``), count, mean loss, share."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(escape(title)), box=box.SIMPLE_HEAVY)
    for column in (key, count, "mean loss", "share"):
        table.add_column(column, no_wrap=True, justify="left" if column == key else "right")
    for row in rows:
        share, label = row["share"], str(row[key])
        table.add_row(
            Text(escape(label) if label != "" else "(empty)"),
            Text(str(row["count"])),
            Text(format_number(row["mean"])),
            Text("-" if share != share else f"{100 * share:.1f}%"),
        )
    return table


def _add_fields(summary, rows: list[tuple[str, str]], gate: dict | None) -> None:
    """The field/value rows of a summary table, and the gate's row where there is a gate."""
    from rich.text import Text

    if gate is not None:
        rows = [*rows, ("gate", f"tripped: {gate['reason']}" if gate["tripped"] else "passed")]
    for field, text in rows:
        summary.add_row(Text(field), Text(escape(text)))


def build_tables(result: Result, per_sample: bool = False, limit: int = 20) -> list:
    """The renderables of the table output: summary, gradients, per-sample, steps."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    summary = Table(
        title=Text(f"{result.torch_class} ({result.loss})"), box=box.SIMPLE_HEAVY, show_header=False
    )
    summary.add_column("field", style="bold", no_wrap=True)
    summary.add_column("value", no_wrap=True)
    from losscli import views

    shown = [(v, result.views[v.name]) for v in views.all_views() if v.name in result.views]
    rows = [
        ("loss", f"{result.loss} ({result.torch_class})"),
        ("value", _value_text(result)),
        *(row for v, part in shown if v.summary_at == "value" for row in v.summary(part)),
        ("reduction", _reduction_text(result)),
        ("options", _options_text(result.options)),
        ("device", result.device),
        ("dtype", result.dtype),
        *(row for v, part in shown if v.summary_at == "end" for row in v.summary(part)),
        *(row for v, part in shown if v.summary_at == "last" for row in v.summary(part)),
    ]
    rows += [(f"input {name}", _input_text(info)) for name, info in result.inputs.items()]
    _add_fields(summary, rows, result.gate)
    tables = [summary]
    if result.gradient_summary is not None:
        grads = Table(title="gradient", box=box.SIMPLE_HEAVY)
        for column in ("input", "shape", "L2 norm", "mean", "min", "max"):
            grads.add_column(column, no_wrap=True, justify="left" if column == "input" else "right")
        for name, stats in result.gradient_summary.items():
            grads.add_row(
                Text(escape(name)),
                Text(str(stats["shape"])),
                *(Text(format_number(stats[k])) for k in ("norm", "mean", "min", "max")),
            )
        tables.append(grads)
    else:
        tables.append(Text("gradient: not computed (--no-grad)"))
    for view, part in shown:
        tables += view.tables(part)
    if per_sample and result.per_sample is not None:
        tables.append(_per_sample_table(result.per_sample[:limit], result.per_sample_total))
    if result.steps is not None:
        tables.append(_steps_table(result.steps, result))
    return tables


def _per_sample_table(elements: np.ndarray, total_rows: int):
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(
        title="per-sample loss", caption=f"first {len(elements)} of {total_rows}", box=box.SIMPLE
    )
    table.add_column("row", justify="right", no_wrap=True)
    if elements.ndim == 1:
        table.add_column("loss", justify="right", no_wrap=True)
        for i, value in enumerate(elements):
            table.add_row(Text(str(i + 1)), Text(format_number(value)))
        return table
    table.add_column("element losses", no_wrap=True)
    table.add_column("row sum", justify="right", no_wrap=True)
    for i, row in enumerate(elements):
        table.add_row(Text(str(i + 1)), Text(format_cell(row)), Text(format_number(row.sum())))
    return table


def _steps_table(steps: Steps, result: Result):
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(title="steps", box=box.SIMPLE)
    for column in steps.columns:
        table.add_column(Text(column), no_wrap=True, min_width=len(column))
    for row in steps.rows:
        table.add_row(*(Text(format_cell(c)) for c in row))
    notes = [Text(escape(n)) for n in steps.notes]
    notes.append(Text(f"reduction {_reduction_text(result)} = {_value_text(result)}"))
    return Group(table, *notes)


# ------------------------------------------------------------------ compare


def render_compare_value(comparison) -> str:
    """The difference b - a of ``losscli compare -f value``."""
    return repr(float(comparison.value)) + "\n"


def compare_tables(comparison) -> list:
    """The table output of ``losscli compare``: both values, the paired difference and its
    interval, the verdict, and what each view compares (per-class differences with
    --by-class)."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from losscli import views
    from losscli.views.uncertainty import interval_text

    a, b = comparison.a, comparison.b
    first = next(iter(a.inputs))
    summary = Table(
        title=Text(f"compare {a.loss} ({a.torch_class}): b - a"),
        box=box.SIMPLE_HEAVY,
        show_header=False,
    )
    summary.add_column("field", style="bold", no_wrap=True)
    summary.add_column("value", no_wrap=True)
    rows = [
        ("a", f"{float(a.value)!r}  ({a.inputs[first]['source']})"),
        ("b", f"{float(b.value)!r}  ({b.inputs[first]['source']})"),
        ("difference b - a", repr(float(comparison.value))),
        ("95% interval", interval_text(comparison.uncertainty)),
        ("verdict", comparison.verdict()),
        ("reduction", a.reduction),
        ("options", _options_text(a.options)),
        ("device", a.device),
        ("dtype", a.dtype),
    ]
    rows += [(f"input {n}", _input_text(info)) for n, info in a.inputs.items() if n != first]
    _add_fields(summary, rows, comparison.gate)
    tables = [summary]
    for view in views.all_views():
        if view.name in comparison.views:
            tables += view.compare_tables(comparison.views[view.name])
    return tables
