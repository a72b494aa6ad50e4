"""``--report FILE.html``: one HTML page of a result, made from the object ``-f json`` writes
(every number in it is that object's), with charts drawn by Matplotlib as inline SVG. It
opens offline and runs nothing: no script, no network, styles inline.

The loss commands, ``merge`` and ``compare`` take the option (``Common.report``). Each
checks the path before any work (``output``: the rules of --grad-out), which also starts the
renderer's process (``worker``: it imports Matplotlib while the run computes), and writes
the page atomically once the result is known (``write``). Each view makes its own section
(``View.report``, ``View.report_summary``, ``View.compare_report``); ``page`` lays them out.
Matplotlib is an optional extra: ``charts.require`` refuses --report without it (exit 2),
saying what to install.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

EXTENSIONS = (".html", ".htm")


class Output:
    """A checked --report path and the renderer started for it (None: render here)."""

    def __init__(self, path: Path) -> None:
        from losscli.report.worker import Renderer

        self.path = path
        try:
            self.renderer: Renderer | None = Renderer()
        except OSError:  # no interpreter to start (an embedded Python)
            self.renderer = None


def output(
    path: str | None, read: dict[tuple[int, int], str], others: dict[str, Path | None]
) -> Output | None:
    """The checked --report path (None where not asked), its renderer started: refused,
    before any work, where it would replace a file the run reads, cannot be written, or is
    the file of another output option (``others``: {flag: checked path or None})."""
    if path is None:
        return None
    from losscli.io.write import check_output_path, refuse_same_file

    checked = check_output_path("--report", path, read, EXTENSIONS)
    refuse_same_file({**others, "--report": checked})
    return Output(checked)


def write(out: Output | None, data: dict[str, Any], command: str) -> None:
    """Write the report of ``data`` (a result's or a comparison's JSON object) atomically;
    ``command`` names what made it (``ce``, ``merge of 2 states``, ``compare ce``)."""
    if out is None:
        return
    from losscli.io.write import write_text
    from losscli.report.page import build

    text = build(data, command) if out.renderer is None else out.renderer.render(data, command)
    write_text(out.path, text)
