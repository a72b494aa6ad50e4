"""One test walks the view registry: every view's flag is in the help of each loss it
applies to (and of merge and compare where they offer it), its example run gives its JSON
fields, and the README documents it."""

from __future__ import annotations

import json
import shlex

import pytest

from losscli import views
from losscli.registry import all_specs
from tests.conftest import DOCS, ROOT, run_cli

README = DOCS


def _help(*command: str) -> str:
    out = run_cli(*command, "--help")
    assert out.exit_code == 0, out.stderr
    return out.stdout


@pytest.mark.parametrize("view", views.all_views(), ids=lambda v: v.name)
def test_every_view_is_offered_runs_and_is_documented(monkeypatch, view):
    from losscli import render

    monkeypatch.chdir(ROOT)
    assert view.example, f"{view.name}: no example"
    shown = []  # the Result that -f json writes
    write = render.render_json
    monkeypatch.setattr(render, "render_json", lambda item: shown.append(item) or write(item))
    out = run_cli(*shlex.split(view.example)[1:], "-f", "json")
    assert out.exit_code == 0, (view.example, out.stderr)
    got = json.loads(out.stdout)
    assert view.name in shown[0].views, view.name
    for key in view.to_json(shown[0].views[view.name]):
        assert key in got, (view.name, key)
        assert f"`{key}`" in README, f"README does not name {key!r}"
    option = view.option
    if option is None:
        return
    assert f"`{option.flag}" in README, f"README does not mention {option.flag}"
    width = 200  # a wide terminal: flags in --help are not cut
    monkeypatch.setenv("COLUMNS", str(width))
    # The loss commands take every view's flag; their --help names the few common options
    # used most and points at `losscli help options`, which lists them all.
    assert option.flag in run_cli("help", "options").stdout
    for spec in all_specs().values():
        if option.applies(spec):
            assert "losscli help options" in " ".join(_help(spec.name).split())
            flagged = run_cli(spec.name, "--help", option.flag, *(["1"] if option.metavar else []))
            assert "No such option" not in flagged.stderr, (option.flag, spec.name)
            if option.compare:
                compared = run_cli("compare", spec.name, "--help", option.flag,
                                   *(["1"] if option.metavar else []))  # fmt: skip
                assert "No such option" not in compared.stderr, (option.flag, spec.name)
    assert (option.flag in _help("merge")) == option.merge


def test_a_view_asked_of_a_loss_it_does_not_apply_to_names_those_it_applies_to():
    from tests.conftest import SAMPLE, assert_usage_error

    for view in views.all_views():
        option = view.option
        if option is None or option.losses is None:
            continue
        other = next(s for s in all_specs().values() if not option.applies(s))
        value = [] if option.kind is bool else [str(option.low or 1)]
        out = run_cli(other.name, SAMPLE / "y_pred.csv", SAMPLE / "y_true.csv", option.flag,
                      *value)  # fmt: skip
        assert_usage_error(out, option.flag, option.loss_names())
