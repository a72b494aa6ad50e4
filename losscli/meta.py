"""``losscli list`` and ``losscli explain``: text from the registry, without torch or NumPy."""

from __future__ import annotations

from losscli.registry import LossSpec, all_specs


def losses_table():
    """A Rich table of every loss: command, aliases, torch class, task, inputs."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(title="losscli losses", box=box.SIMPLE_HEAVY)
    for column in ("command", "aliases", "torch.nn", "task", "inputs"):
        table.add_column(column, no_wrap=column != "inputs")
    for spec in all_specs().values():
        inputs = "\n".join(f"{i.name}: {i.must_be}" for i in spec.inputs)
        table.add_row(
            Text(spec.name),
            Text(", ".join(spec.aliases)),
            Text(spec.torch_class),
            Text(spec.task),
            Text(inputs),
        )
    return table


def explain_text(spec: LossSpec) -> str:
    """The explanation of one loss as plain text."""
    lines = [f"{spec.name}: torch.nn.{spec.torch_class}", spec.summary, ""]
    lines += ["Formula", *("  " + f for f in spec.explain.formula.splitlines()), ""]
    lines.append("Inputs, in order")
    lines += [f"  {i.name}: {i.must_be}" for i in spec.inputs]
    if spec.options:
        lines.append("")
        lines.append("Options (torch defaults)")
        lines += [f"  {o.flag} (default {o.default}): {o.described}" for o in spec.options]
    lines += ["", "Steps"]
    lines += [f"  {n}. {s}" for n, s in enumerate(spec.explain.procedure, start=1)]
    lines += ["", "Common mistakes"]
    lines += [f"  - {m}" for m in spec.explain.mistakes]
    lines += ["", "Try it", f"  {spec.example} --steps"]
    return "\n".join(lines)


def print_renderable(renderable) -> None:
    """Print text or a Rich renderable to stdout."""
    from losscli import output

    if isinstance(renderable, str):
        output.write_stdout(renderable + "\n")
    else:
        output.print_renderables([renderable])
