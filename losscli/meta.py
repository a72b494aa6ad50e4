"""``losscli list`` and ``losscli explain``: text from the registry, without torch or NumPy."""

from __future__ import annotations

from losscli.registry import LossSpec, all_specs


def losses_table():
    """A Rich table of every loss: command, aliases, torch class, task, inputs."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(title="losscli losses", box=box.SIMPLE_HEAVY)
    for column in ("command", "aliases", "torch", "task", "inputs"):
        table.add_column(column, no_wrap=column != "inputs")
    for spec in all_specs().values():
        inputs = "\n".join(f"{i.name}: {i.must_be}" for i in spec.inputs)
        table.add_row(
            Text(spec.name),
            Text(", ".join(spec.aliases)),
            Text(spec.torch_class if spec.source is None else spec.origin),
            Text(spec.task),
            Text(inputs),
        )
    return table


def losses_json() -> str:
    """Every loss as a JSON array, for scripts: command, aliases, torch class, task, inputs,
    options (flag, torch default, help as --help shows it) and reductions."""
    import json

    losses = [
        {
            "command": spec.name,
            "aliases": list(spec.aliases),
            "torch": spec.torch_class,
            "source": spec.origin,
            "task": spec.task,
            "inputs": [{"name": i.name, "must_be": i.must_be} for i in spec.inputs],
            "options": [
                {"flag": o.flag, "default": o.default, "help": o.described} for o in spec.options
            ],
            "reductions": list(spec.reductions),
        }
        for spec in all_specs().values()
    ]
    return json.dumps(losses, indent=2) + "\n"


LANGUAGES = ("en", "zh")

_HEADINGS_EN = {
    "formula": "Formula",
    "inputs": "Inputs, in order",
    "options": "Options (torch defaults)",
    "steps": "Steps",
    "mistakes": "Common mistakes",
    "try": "Try it",
}


def explain_text(spec: LossSpec, lang: str = "en") -> str:
    """The explanation of one loss as plain text, in English (``en``) or Chinese (``zh``).

    Both have the same sections; the formula and the example command are the spec's own.
    """
    if lang == "zh":
        return _explain_zh(spec)
    if lang != "en":
        from losscli.errors import OptionError

        raise OptionError(f"--lang {lang!r} is not one of {', '.join(LANGUAGES)}")
    return _assemble(
        spec,
        _HEADINGS_EN,
        spec.explain.formula,
        spec.summary,
        [f"  {i.name}: {i.must_be}" for i in spec.inputs],
        [f"  {o.flag} (default {o.default}): {o.described}" for o in spec.options],
        spec.explain.procedure,
        spec.explain.mistakes,
    )


def _explain_zh(spec: LossSpec) -> str:
    """The Chinese explanation; a text missing from ``explain_zh`` is shown in English."""
    from losscli import explain_zh as zh

    entry = zh.LOSSES.get(spec.name, {})
    must_be, helps = entry.get("inputs", {}), entry.get("options", {})
    options = []
    for o in spec.options:
        text = helps.get(o.name) or o.help
        if o.domain:
            domain = zh.OR.join(map(str, o.choices)) if o.choices else o.domain
            text += f"{zh.VALID}{domain}。"
        options.append(f"  {o.flag}（{zh.DEFAULT} {o.default}）：{text}")
    steps, mistakes = entry.get("steps", ()), entry.get("mistakes", ())
    return _assemble(
        spec,
        zh.HEADINGS,
        zh.FORMULAS.get(spec.name, spec.explain.formula),
        entry.get("summary") or spec.summary,
        [f"  {i.name}：{must_be.get(i.name) or i.must_be}" for i in spec.inputs],
        options,
        steps if len(steps) == len(spec.explain.procedure) else spec.explain.procedure,
        mistakes if len(mistakes) == len(spec.explain.mistakes) else spec.explain.mistakes,
    )


def _assemble(spec, headings, formula, summary, inputs, options, steps, mistakes) -> str:
    """The sections of an explanation under the given headings, from its lines and texts."""
    lines = [f"{spec.name}: {spec.origin}", summary, ""]
    lines += [headings["formula"], *("  " + f for f in formula.splitlines()), ""]
    lines.append(headings["inputs"])
    lines += inputs
    if options:
        lines.append("")
        lines.append(headings["options"])
        lines += options
    lines += ["", headings["steps"]]
    lines += [f"  {n}. {s}" for n, s in enumerate(steps, start=1)]
    lines += ["", headings["mistakes"]]
    lines += [f"  - {m}" for m in mistakes]
    lines += ["", headings["try"], f"  {spec.example} --steps"]
    return "\n".join(lines)


TOPICS = ("options",)


def options_text(topic: str) -> str:
    """``losscli help options``: every common option of the loss commands with its metavar,
    default and help, by the panel a loss command's --help would show it in."""
    import dataclasses
    import typing

    from losscli.errors import OptionError
    from losscli.options import SHOWN, Common

    if topic not in TOPICS:
        raise OptionError(f"help {topic!r}: the topics are {', '.join(TOPICS)}")
    hints = typing.get_type_hints(Common, include_extras=True)
    lines = [
        "Options of every loss command (losscli LOSS --help shows those marked *; the",
        "loss's own options are in its --help).",
        "",
    ]
    for field in dataclasses.fields(Common):
        info = typing.get_args(hints[field.name])[1]
        flags = [d for d in (info.default, *info.param_decls) if isinstance(d, str) and d]
        flags = [f for f in flags if f.startswith("-") and f != "..."]
        head = ", ".join(flags) + (f" {info.metavar}" if info.metavar else "")
        default = field.default
        shown = "*" if field.name in SHOWN else " "
        lines.append(f"{shown} {head}")
        text = info.help + (f" Default: {default}." if default not in (None, False) else "")
        if info.envvar:
            text += f" Environment: {info.envvar}."
        lines.append(f"    {text}")
    return "\n".join(lines)


def print_text(text: str) -> None:
    """Print plain text to stdout: in a terminal each line wrapped to its width (continuation
    lines indented under the text of a list item); piped, as it is."""
    import sys

    from losscli import output

    if sys.stdout is not None and sys.stdout.isatty():
        import shutil

        width = shutil.get_terminal_size().columns
        text = "\n".join(w for line in text.split("\n") for w in wrap_line(line, width))
    output.write_stdout(text + "\n")


def wrap_line(line: str, width: int) -> list[str]:
    """``line`` cut into lines of at most ``width`` terminal cells, at spaces, or between
    two CJK characters (which take two cells each); continuation lines are indented to the
    text after the line's indent and list marker (``1. ``, ``- ``)."""
    import re

    from rich.cells import cell_len

    if cell_len(line) <= width:
        return [line]
    marker = re.match(r"\s*(?:\d+\. |- )?", line).group(0)
    indent = " " * min(cell_len(marker) or 2, width // 3)
    # Words: runs of non-space, non-CJK characters; each CJK character; runs of spaces.
    tokens = re.findall(
        r"[\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef]|[^\s\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef]+|\s+",
        line,
    )
    lines, current = [], ""
    for token in tokens:
        if cell_len(current) + cell_len(token) <= width or current.rstrip() == marker.rstrip():
            current += token
            continue
        lines.append(current.rstrip())
        current = indent + ("" if token.isspace() else token)
    while cell_len(current) > width:  # a word longer than a line: cut it
        cut = len(current)
        while cut > 1 and cell_len(current[:cut]) > width:
            cut -= 1
        lines.append(current[:cut])
        current = indent + current[cut:]
    lines.append(current.rstrip())
    return [piece for piece in lines if piece.strip()] or [line]


def print_renderable(renderable) -> None:
    """Print text or a Rich renderable to stdout."""
    from losscli import output

    if isinstance(renderable, str):
        output.write_stdout(renderable + "\n")
    else:
        output.print_renderables([renderable])


def formats_json() -> str:
    """The input formats as a JSON array (``losscli list-formats -f json``)."""
    import json

    from losscli.io import formats

    return json.dumps(formats.describe(), indent=2) + "\n"


def formats_table():
    """The input formats as a Rich table (``losscli list-formats``)."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from losscli.io import formats

    table = Table(title="losscli input formats", box=box.SIMPLE_HEAVY)
    for column in ("format", "extensions", "magic", "columns", "keys", "what"):
        table.add_column(column, no_wrap=column != "what")
    for item in formats.describe():
        table.add_row(
            Text(item["name"]),
            Text(" ".join(item["extensions"])),
            "yes" if item["magic"] else "",
            "named" if item["columns"] else "",
            "FILE:KEY" if item["keys"] else "",
            Text(item["summary"]),
        )
    return table
