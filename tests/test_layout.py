"""Narrow terminals: ``list``, ``--steps``, ``--per-sample`` and the summary are stacked or
wrapped under a real pseudo-terminal, never cut; piped output keeps the natural width;
``list -f json`` holds the registry."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time

import pytest
from rich.cells import cell_len
from rich.console import Group
from rich.table import Table

from losscli.registry import all_specs
from tests.conftest import DOCS, ROOT, run_cli, run_process

LOGITS = "sample_data/logits.csv"
LABELS = "sample_data/labels.csv"
STEPS = ("ce", LOGITS, LABELS, "--steps", "--per-sample")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def run_in_terminal(*args: str, columns: int) -> str:
    """stdout of ``python -m losscli ARGS`` written to a pseudo-terminal ``columns`` wide,
    without its colours; stderr goes to a pipe (no progress bar)."""
    main, side = pty.openpty()
    fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {**os.environ, "COLUMNS": str(columns), "LINES": "50", "TERM": "xterm-256color"}
    for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        env.pop(name, None)
    process = subprocess.Popen(
        [sys.executable, "-m", "losscli", *map(str, args)],
        stdin=subprocess.DEVNULL,
        stdout=side,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    os.close(side)
    chunks, deadline = [], time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 1)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the terminal's other side is closed: all is read
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(main)
    stderr = process.communicate(timeout=120)[1]
    assert process.returncode == 0, stderr.decode()
    text = b"".join(chunks).decode().replace("\r\n", "\n")
    return ANSI.sub("", text)


def assert_fits(text: str, columns: int) -> None:
    """No line wider than the terminal, and nothing cut with an ellipsis."""
    widest = max(cell_len(line) for line in text.splitlines())
    assert widest <= columns, text
    assert "…" not in text, text


def squeezed(text: str) -> str:
    """``text`` with every run of whitespace as one space (a value wrapped at its spaces reads
    back whole)."""
    return " ".join(text.split())


def assert_shown_whole(text: str, *values: str) -> None:
    flat = squeezed(text)
    for value in values:
        assert squeezed(value) in flat, (value, text)


def table_texts(renderables) -> list[str]:
    """Every title, column header and cell of the tables among ``renderables``."""
    texts = []
    for renderable in renderables:
        if isinstance(renderable, Group):
            texts += table_texts(renderable.renderables)
        elif isinstance(renderable, Table):
            for column in renderable.columns:
                if renderable.show_header:
                    texts.append(str(column.header))
                texts += [str(cell) for cell in column.cells]
            texts += [str(part) for part in (renderable.title, renderable.caption) if part]
    return [text for text in texts if text.strip()]


def result_tables(*sources: str):
    """The tables that ``losscli ce SOURCES --steps --per-sample`` prints, built in-process."""
    import losscli
    from losscli import render

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)
        result = losscli.compute_files("ce", *sources, steps=True, per_sample=True)
    return render.build_tables(result, True, 20)


def list_texts() -> list[str]:
    texts = ["command", "aliases", "torch", "task", "inputs"]
    for spec in all_specs().values():
        texts += [spec.name, *spec.aliases, spec.torch_class, spec.task]
        texts += [f"{i.name}: {i.must_be}" for i in spec.inputs]
    return texts


@pytest.mark.parametrize("columns", [80, 60])
def test_list_in_a_narrow_terminal_is_stacked_not_cut(columns):
    text = run_in_terminal("list", columns=columns)
    assert_fits(text, columns)
    assert_shown_whole(text, *list_texts())
    for name in ("poisson-nll", "bce-logits", "multilabel-soft-margin", "gaussian-nll"):
        assert re.search(rf"^{re.escape(name)}$", text, re.M), name
    assert re.search(r"^ {2}torch: CrossEntropyLoss$", text, re.M)


@pytest.mark.parametrize("columns", [80, 60])
def test_steps_and_per_sample_in_a_narrow_terminal_are_whole(columns):
    text = run_in_terminal(*STEPS, columns=columns)
    assert_fits(text, columns)
    texts = table_texts(result_tables(LOGITS, LABELS))
    for column in ("row", "logits", "softmax p", "target", "p[target]", "-log p[target]", "loss"):
        assert column in texts
    assert_shown_whole(text, *texts)
    assert "reduction mean: sum" in text
    for row in range(1, 11):
        assert re.search(rf"^row {row}$", text, re.M), row
    assert re.search(r"^ {2}p\[target\]: 0\.0657544$", text, re.M)


@pytest.mark.parametrize("columns", [80, 60])
def test_a_long_source_path_wraps_in_the_summary(tmp_path, columns):
    folder = tmp_path / ("a_very_long_folder_name_" * 4)
    folder.mkdir()
    logits = folder / "logits.csv"
    logits.write_bytes((ROOT / LOGITS).read_bytes())
    text = run_in_terminal("ce", logits, LABELS, "--no-grad", columns=columns)
    assert_fits(text, columns)
    assert str(logits) in "".join(text.split())
    assert_shown_whole(text, "loss", "95% interval", "input predictions", "input targets")
    assert re.search(r"^ +value +2\.32302", text, re.M), text  # still a field/value table


def test_a_table_that_fits_is_printed_as_it_is():
    text = run_in_terminal("ce", LOGITS, LABELS, "--per-sample", "--limit", "3", columns=200)
    assert_fits(text, 200)
    assert re.search(r"^ +row +loss *$", text, re.M), text
    assert re.search(r"^ +input +shape +L2 norm +mean +min +max *$", text, re.M), text


@pytest.mark.parametrize(
    ("args", "header"),
    [
        (("list",), r"^ +command +aliases +torch +task +inputs *$"),
        (STEPS, r"^ +row +logits +softmax p +target +p\[target\] +-log p\[target\] +loss *$"),
    ],
)
def test_piped_output_keeps_the_table_at_its_natural_width(args, header):
    done = run_process(*args, env={**os.environ, "COLUMNS": "80"})
    assert done.returncode == 0, done.stderr
    text = done.stdout.decode()
    assert re.search(header, text, re.M), text
    assert max(len(line) for line in text.splitlines()) > 80
    assert "…" not in text


def test_list_json_holds_every_loss_of_the_registry():
    out = run_cli("list", "-f", "json")
    assert out.exit_code == 0, out.stderr
    assert out.stdout.endswith("]\n")
    losses = json.loads(out.stdout)
    specs = all_specs()
    assert len(losses) == len(specs) >= 21  # the twenty torch.nn losses and focal
    assert [entry["command"] for entry in losses] == list(specs)
    import torch

    for entry in losses:  # what each command itself says and does
        command = entry["command"]
        spec = specs[command]
        assert entry["source"] == spec.origin
        if spec.forward is None:  # a torch.nn class; otherwise the spec's own forward
            assert hasattr(torch.nn, entry["torch"])
        assert set(entry) == {"command", "aliases", "torch", "source", "task", "inputs",
                              "options", "reductions"}  # fmt: skip
        helptext = run_cli(command, "--help").stdout
        assert entry["torch"] in helptext
        for option in entry["options"]:
            assert option["flag"] in helptext
        if entry["aliases"]:
            assert f"Alias: {', '.join(entry['aliases'])}" in " ".join(helptext.split())
        usage = " ".join(i["name"].upper() for i in entry["inputs"])
        assert usage in " ".join(helptext.split())
        for reduction in entry["reductions"]:
            assert reduction in helptext
    assert run_cli("list", "--format", "json").stdout == out.stdout


def test_list_format_table_is_the_default_and_an_unknown_format_is_refused():
    assert run_cli("list", "-f", "table").stdout == run_cli("list").stdout
    done = run_process("list", "-f", "xml")
    assert done.returncode == 2
    assert done.stdout == b""
    assert len(done.stderr.decode().strip().splitlines()) == 1
    assert b"--format" in done.stderr


def test_readme_shows_the_real_stacked_steps_at_80_columns():
    readme = DOCS
    section = readme.split("**Narrow terminals.**")[1]
    sample = section.split("```\n")[1]
    assert sample.startswith("steps\n") and len(sample.splitlines()) < 30
    text = run_in_terminal("ce", LOGITS, LABELS, "--steps", "--limit", "2", columns=80)
    assert sample in "\n".join(line.rstrip() for line in text.splitlines()) + "\n"
