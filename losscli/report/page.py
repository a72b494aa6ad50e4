"""The report page, from the JSON object that ``-f json`` writes: a header with the value, the
summary (the views' rows among the run's fields), the gradient, then each view's section, in
the order of the view registry. ``compare`` has its own head and summary, then the sections
that each view makes of the comparison.

The page loads nothing and runs nothing: styles inline, charts as inline SVG, no script, and
a Content-Security-Policy that forbids anything else.
"""

from __future__ import annotations

from typing import Any

from losscli.report.html import Section, cell, facts, fields, figure, note, number, table, text

POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
VALUES_LISTED = 20  # elements of a reduction none value listed in the summary


def build(data: dict[str, Any], command: str) -> str:
    """The report page of a result's (or a comparison's) JSON object."""
    if "difference" in data and "a" in data:
        return compare_page(data, command)
    return run_page(data, command)


def run_page(result: dict[str, Any], command: str) -> str:
    """The report of a loss run or of merged states (``command`` says which)."""
    from losscli import views

    shown = views.all_views()
    value = result["value"]
    tiles: list[tuple[str, str]] = [
        *([("value", _value(value))] if isinstance(value, list) else []),
        *(r for v in shown if v.summary_at == "value" for r in v.report_summary(result)),
        *(r for v in shown if v.summary_at == "last" for r in v.report_summary(result)),
        ("reduction", text(result["reduction"])),
        ("device, dtype", f"{text(result['device'])}, {text(result['dtype'])}"),
        *(r for v in shown if v.summary_at == "end" for r in v.report_summary(result)),
        *([("gate", _gate(result["gate"]))] if result.get("gate") else []),
    ]
    sections = [Section("summary", "Summary", facts(tiles) + _warnings(result["warnings"]), True)]
    sections += [s for s in (view.report(result) for view in shown) if s is not None]
    sections.append(Section("gradient", "Gradient", _gradient(result.get("gradient"))))
    rows = [
        ("loss", f"{text(result['loss'])} ({text(result['torch'])})"),
        *_inputs(result["inputs"], "inputs"),
        ("options", _options(result["options"], "options")),
        ("timing", _timing(result.get("timing") or {})),
    ]
    sections.append(Section("inputs", "Inputs and options", fields(rows), wide=True))
    if isinstance(value, list):
        big = f"{_count(value)} values"
        what = f"{result['loss']}, reduction none ({result['torch']})"
    else:
        big = number(value, "value")
        what = f"{result['reduction']} {result['loss']} ({result['torch']})"
    head = _head(command, big, text(what), _interval(result), result.get("gate"))
    title = f"{result['loss']} {_plain(value)}"
    return _page(title, head, sections)


def compare_page(comparison: dict[str, Any], command: str) -> str:
    """The report of ``losscli compare``: both values, the paired difference b - a with its
    interval and verdict, and what each view compares (per-class differences, ECEs)."""
    from losscli import views
    from losscli.report import charts

    a, b, difference = comparison["a"], comparison["b"], comparison["difference"]
    first = next(iter(a["inputs"]))
    ci95 = difference.get("ci95")
    interval = _low_high(ci95, "difference.ci95") if ci95 is not None else None
    tiles: list[tuple[str, str]] = [
        ("a", number(a["value"], "a.value") + _meta(text(a["inputs"][first]["source"]))),
        ("b", number(b["value"], "b.value") + _meta(text(b["inputs"][first]["source"]))),
    ]
    if interval is not None:
        stderr = number(difference["stderr"], "difference.stderr")
        tiles.append(("95% interval of b \u2212 a", f"{interval}{_meta('standard error', stderr)}"))
    elif difference.get("stderr_note"):
        tiles.append(("95% interval", text(f"not given: {difference['stderr_note']}")))
    tiles += [
        ("reduction", text(a["reduction"])),
        ("device, dtype", f"{text(a['device'])}, {text(a['dtype'])}"),
        *([("gate", _gate(comparison["gate"]))] if comparison.get("gate") else []),
    ]
    warnings = [*a["warnings"], *(w for w in b["warnings"] if w not in a["warnings"])]
    chart = charts.difference(a["value"], b["value"], difference["value"], ci95)
    caption = "Left: the loss of a and of b. Right: the paired difference b \u2212 a"
    caption += " with its 95% interval; left of 0, b has the lower loss."
    sections = [
        Section("summary", "Summary", facts(tiles) + _warnings(warnings), wide=True),
        Section("difference", "Paired difference b \u2212 a", figure(chart, caption)),
    ]
    for view in views.all_views():
        section = view.compare_report(comparison)
        if section is not None:
            sections.append(section)
    rows = [
        ("loss", f"{text(a['loss'])} ({text(a['torch'])})"),
        (f"a: {first}", _input(a["inputs"][first], f"a.inputs.{first}")),
        (f"b: {first}", _input(b["inputs"][first], f"b.inputs.{first}")),
        *_inputs({n: i for n, i in a["inputs"].items() if n != first}, "a.inputs"),
        ("options", _options(a["options"], "a.options")),
    ]
    sections.append(Section("inputs", "Inputs and options", fields(rows), wide=True))
    better = {"a": "a is better", "b": "b is better"}.get(difference["better"], "no clear winner")
    sub = text(difference["verdict"]) + (f"<br>95% interval {interval}" if interval else "")
    head = _head(
        command,
        number(difference["value"], "difference.value"),
        text(f"b \u2212 a, {a['reduction']} {a['loss']} ({a['torch']})"),
        sub,
        comparison.get("gate"),
        extra=[("pass" if difference["better"] else "", better)],
    )
    return _page(f"compare {a['loss']}: b \u2212 a {_plain(difference['value'])}", head, sections)


def _page(title: str, head: str, sections: list[Section]) -> str:
    from losscli.report.style import CSS

    body = "".join(
        f'<section id="{text(s.id)}"{" class=wide" if s.wide else ""}><h2>{text(s.title)}</h2>'
        f"{s.body}</section>"
        for s in sections
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="color-scheme" content="light dark">'
        '<meta name="generator" content="losscli">'
        f"<title>{text(title)} \u2013 losscli report</title><style>{CSS}</style></head>\n"
        f'<body><div class="page">{head}<main>{body}</main>'
        "<footer>Made by losscli. Every number here is the one "
        "<code>-f json</code> writes for the same run (each carries its full value).</footer>"
        "</div></body></html>\n"
    )


def _head(command: str, big: str, what: str, sub: str, gate, extra=()) -> str:
    badges = [f'<span class="badge {kind}">{text(label)}</span>' for kind, label in extra]
    if gate is not None:
        tripped = gate["tripped"]
        word = "gate tripped" if tripped else "gate passed"
        badges.append(f'<span class="badge {"fail" if tripped else "pass"}">{word}</span>')
    return (
        f'<header class="top"><p class="kicker">losscli report \u00b7 {text(command)}</p>'
        f'<h1 id="value">{big}<span class="what">{what}</span></h1>'
        + (f'<p class="sub">{sub}</p>' if sub else "")
        + (f'<p class="badges">{"".join(badges)}</p>' if badges else "")
        + "</header>"
    )


def _meta(*parts: str) -> str:
    """A muted second line of a tile, from pieces of HTML (data text escaped already)."""
    return f'<br><span class="meta">{" ".join(parts)}</span>'


def _plain(value) -> str:
    from losscli.report.html import shown

    return f"{_count(value)} values" if isinstance(value, list) else shown(value)


def _count(value) -> int:
    return sum(_count(v) for v in value) if isinstance(value, list) else 1


def _flat(value, path: str):
    """(path, number) of each element of a nested list, in C order."""
    if not isinstance(value, list):
        yield path, value
        return
    for i, item in enumerate(value):
        yield from _flat(item, f"{path}.{i}")


def _value(value) -> str:
    if not isinstance(value, list):
        return number(value, "value")
    listed = []
    for path, item in _flat(value, "value"):
        if len(listed) == VALUES_LISTED:
            break
        listed.append(number(item, path))
    more = f" \u2026 ({_count(value)} in all; -f json or -f value has each)"
    return ", ".join(listed) + (more if _count(value) > len(listed) else "")


def _interval(result: dict[str, Any]) -> str:
    if result.get("ci95") is None:
        return ""
    low_high = _low_high(result["ci95"], "ci95")
    return f"95% interval {low_high} (\u00b1 1.96 \u00d7 {number(result['stderr'], 'stderr')})"


def _low_high(ci95: list, path: str) -> str:
    return f"[{number(ci95[0], f'{path}.0')}, {number(ci95[1], f'{path}.1')}]"


def _options(options: dict[str, Any], path: str) -> str:
    if not options:
        return "none"
    return "<br>".join(
        f"<code>{text(name)}</code> = {cell(value, f'{path}.{name}')}"
        for name, value in options.items()
    )


def _inputs(inputs: dict[str, Any], path: str) -> list[tuple[str, str]]:
    return [(f"input {name}", _input(info, f"{path}.{name}")) for name, info in inputs.items()]


def _input(info: dict[str, Any], path: str) -> str:
    """An input's source, then what reading decided (what is off or absent left out)."""
    parts = []
    for key, value in info.items():
        if key == "source" or value is None or value is False:
            continue
        shown = cell(value, f"{path}.{key}") if key == "shape" else text(value)
        parts.append(f"{text(key.replace('_', ' '))} {shown}")
    source = f'<span class="source">{text(info.get("source", ""))}</span>'
    meta = " \u00b7 ".join(parts)
    return f'{source}<br><span class="meta">{meta}</span>'


def _gate(gate) -> str:
    if gate["tripped"]:
        return f'<strong class="fail" id="gate">tripped</strong>: {text(gate["reason"])}'
    return '<span id="gate">passed</span>'


def _timing(timing: dict[str, Any]) -> str:
    if not timing:
        return "\u2013"
    return ", ".join(
        f"{text(k.removesuffix('_s'))} {number(v, f'timing.{k}', 3)} s" for k, v in timing.items()
    )


def _warnings(warnings: list[str]) -> str:
    if not warnings:
        return ""
    items = "".join(f"<li>{text(w)}</li>" for w in warnings)
    return f'<div class="warnings" id="warnings"><strong>Warnings</strong><ul>{items}</ul></div>'


def _gradient(gradient) -> str:
    if gradient is None:
        return note("Not computed (--no-grad, or a comparison).")
    keys = ("norm", "mean", "min", "max")
    rows = [
        [f"<code>{text(name)}</code>", cell(stats["shape"], f"gradient.{name}.shape"),
         *(number(stats[k], f"gradient.{name}.{k}") for k in keys)]
        for name, stats in gradient.items()
    ]  # fmt: skip
    return table(["input", "shape", "L2 norm", "mean", "min", "max"], rows, (2, 3, 4, 5))
