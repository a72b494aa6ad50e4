"""What a newcomer reads first: one screen of --help per loss command in a real 80-column
terminal, without framework labels or cut choice lists; a command without its inputs says
so in two lines; every option is listed by `losscli help options`."""

from __future__ import annotations

import dataclasses
import re

import pytest

from losscli.options import Common
from losscli.registry import all_specs
from tests.conftest import run_cli, run_process
from tests.test_layout import run_in_terminal

NOISE = re.compile(r"<int|<str>|<float|<text>|\[x\s*[<>]=|[<>]=x\]|\{[A-Z][A-Z ]+\}")


@pytest.mark.parametrize("command", [*([name] for name in all_specs()), ["compare", "ce"]])
def test_help_fits_one_screen_at_80_columns_without_labels(command):
    shown = run_in_terminal(*command, "--help", columns=80).replace("\r", "")
    lines = shown.rstrip("\n").splitlines()
    assert len(lines) <= 60, len(lines)
    assert not NOISE.search(shown), NOISE.search(shown)
    assert "losscli help options" in " ".join(" ".join(lines).split())
    for line in lines:  # no choice list <a|b|c> cut across lines: each closes on its line
        for start in re.finditer(r"<[\w-]*\|", line):
            assert ">" in line[start.end() :], line


@pytest.mark.parametrize("command", [["ce"], ["mse"], ["compare", "ce"], ["cross-entropy"]])
def test_a_command_without_its_inputs_gives_usage_and_one_error(command):
    done = run_process(*command)
    assert done.returncode == 2
    assert done.stdout == b""
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("Usage: losscli ") and "{" not in lines[0]
    assert lines[1].startswith("losscli: error: Missing argument")


def test_help_options_lists_every_common_option():
    out = run_cli("help", "options")
    assert out.exit_code == 0
    for field in dataclasses.fields(Common):
        flag = "--" + field.name.rstrip("_").replace("_", "-")
        assert flag in out.stdout, flag
    unknown = run_cli("help", "nope")
    assert unknown.exit_code == 2 and "options" in unknown.stderr


def test_hidden_options_still_work():
    out = run_cli("ce", "sample_data/logits.csv", "sample_data/labels.csv", "--block-rows", "3",
                  "--top", "2", "-f", "json")  # fmt: skip
    assert out.exit_code == 0, out.stderr


@pytest.mark.parametrize("args", [["--top", "0"], ["--block-rows", "0"], ["--limit", "0"],
                                  ["--calibration", "1001"]])  # fmt: skip
def test_an_option_out_of_its_domain_says_the_domain_in_one_line(args):
    done = run_process("ce", "sample_data/logits.csv", "sample_data/labels.csv", *args)
    stderr = done.stderr.decode()
    assert done.returncode == 2
    assert "out of range; valid:" in stderr and len(stderr.strip().splitlines()) == 1
