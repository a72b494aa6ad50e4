"""--report FILE.html: the page's numbers are the JSON's, data text is escaped everywhere,
the page loads and runs nothing, and the file is written atomically, like --grad-out, or
refused before the work (exit 2)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ROOT, SAMPLE, assert_usage_error, run_cli
from tests.reports import HOSTILE, Page, check_numbers, hostile_inputs, make

pytest.importorskip("matplotlib", reason="--report needs pip install 'losscli[report]'")

KINDS = {
    "ce": (
        {"summary", "by-class", "hist", "top", "calibration", "gradient", "inputs"},
        ["value", "stderr", "ci95.0", "ci95.1", "perplexity", "bits", "by_class.0.mean",
         "by_class.4.count", "hist.quantiles.p50", "hist.quantiles.p90", "hist.quantiles.p99",
         "hist.quantiles.max", "hist.count", "calibration.ece", "calibration.bins.3.accuracy",
         "top.0.loss", "top.4.p_target", "top.0.row", "gradient.predictions.norm",
         "gradient.predictions.max", "inputs.predictions.shape"],
    ),
    "mse-group": (
        {"summary", "by-group", "hist", "gradient", "inputs"},
        ["value", "by_group.0.mean", "by_group.2.count", "by_group.1.share",
         "hist.quantiles.p99", "gradient.predictions.mean"],
    ),
    "merge": (
        {"summary", "by-class", "hist", "top", "gradient", "inputs"},
        ["value", "ci95.0", "by_class.3.mean", "hist.quantiles.max", "top.2.loss",
         "gradient.predictions.norm"],
    ),
    "compare": (
        {"summary", "difference", "by-class", "calibration", "inputs"},
        ["a.value", "b.value", "difference.value", "difference.ci95.0", "difference.ci95.1",
         "difference.stderr", "by_class.0.mean_a", "by_class.0.mean_b",
         "by_class.3.difference", "calibration.ece_a", "calibration.ece_b",
         "calibration.difference"],
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reports")
    return {kind: make(kind, folder) for kind in KINDS}


@pytest.mark.parametrize("kind", KINDS)
def test_every_number_in_the_page_is_the_json_number_at_its_key(pages, kind):
    _, data, html = pages[kind]
    page = Page(html)
    check_numbers(page, data)
    sections, keys = KINDS[kind]
    assert sections <= page.ids, sections - page.ids
    missing = [k for k in keys if k not in page.numbers]
    assert not missing, missing


@pytest.mark.parametrize("kind", KINDS)
def test_the_page_loads_and_runs_nothing(pages, kind):
    _, _, html = pages[kind]
    page = Page(html)
    assert "script" not in page.tags and "iframe" not in page.tags and "link" not in page.tags
    # url(#p1) is a clip path of a chart; nothing may name another place
    assert not re.search(r"<script|javascript:|@import|url\((?!#)", html, re.I)
    for tag, name, value in page.attributes:
        assert not name.startswith("on"), (tag, name)
        if name in ("src", "href", "xlink:href", "action"):
            assert value.startswith("#"), (tag, name, value)  # links inside the page only
    policy = [v for t, n, v in page.attributes if t == "meta" and n == "content" and "src" in v]
    assert policy == ["default-src 'none'; style-src 'unsafe-inline'; img-src data:"]
    assert "svg" in page.tags and 'xmlns="http://www.w3.org/2000/svg"' in html
    assert html.count("<svg") == len(re.findall(r'viewBox="[^"]+"', html))
    assert not re.search(r"<svg[^>]*\swidth=", html)  # sized by the page, through its viewBox


def test_stdout_is_the_same_with_and_without_report(tmp_path):
    args = [SAMPLE / "logits.csv", SAMPLE / "labels.csv", "--by-class", "--top", "2"]
    for form in ("json", "value", "table"):
        plain = run_cli("ce", *args, "-f", form)
        reported = run_cli("ce", *args, "-f", form, "--report", tmp_path / f"{form}.html")
        assert reported.exit_code == plain.exit_code == 0
        if form == "json":
            a, b = json.loads(plain.stdout), json.loads(reported.stdout)
            a.pop("timing"), b.pop("timing")
            assert a == b
        else:
            assert reported.stdout == plain.stdout
        assert reported.stderr == plain.stderr
        assert (tmp_path / f"{form}.html").stat().st_size > 0


def test_hostile_class_and_file_names_are_text_everywhere(tmp_path):
    logits, labels = hostile_inputs(tmp_path)
    page_path = tmp_path / "r<&'\".html"
    out = run_cli("ce", logits, labels, "--by-class", "--top", "3", "--calibration", "5",
                  "--hist", "-f", "json", "--report", page_path)  # fmt: skip
    assert out.exit_code == 0, out.stderr
    html = page_path.read_text(encoding="utf-8")
    page = Page(html)
    assert "script" not in page.tags and "img" not in page.tags
    assert "<script" not in html and "<img" not in html
    text = "".join(page.text)
    for name in HOSTILE:
        assert name in text  # shown as text, in the table and in the chart
        assert html.count(name.replace("<", "&lt;").replace(">", "&gt;")) >= 2
    assert "ctl\\x01x" in text and "\x01" not in html and "\x02" not in html
    assert "lo<g&\"it's\\x02.csv" in text  # the file name, escaped as the terminal shows it
    assert "a&b\"q'$x$" in text  # a literal $, not Matplotlib's math
    check_numbers(page, json.loads(out.stdout))


def test_hostile_group_values_and_column_name_are_text(tmp_path):
    table = tmp_path / "t.csv"
    rows = [f"{i * 0.1},{i % 3 * 0.2},{HOSTILE[i % 2]}" for i in range(8)]
    table.write_text("p,y,<b>grp</b>\n" + "\n".join(rows) + "\n")
    page_path = tmp_path / "g.html"
    out = run_cli("mse", table, "--pred-cols", "p", "--target-cols", "y", "--group-by",
                  "<b>grp</b>", "-f", "json", "--report", page_path)  # fmt: skip
    assert out.exit_code == 0, out.stderr
    html = page_path.read_text(encoding="utf-8")
    page = Page(html)
    assert not {"script", "img", "b"} & set(page.tags)
    assert "By <b>grp</b>" in page.headings
    check_numbers(page, json.loads(out.stdout))


def test_a_report_of_reduction_none_lists_the_first_values(tmp_path):
    page_path = tmp_path / "none.html"
    out = run_cli("mse", SAMPLE / "y_pred.csv", SAMPLE / "y_true.csv", "-r", "none",
                  "-f", "json", "--report", page_path, "--check")  # fmt: skip
    assert out.exit_code == 0, out.stderr
    page = Page(page_path.read_text(encoding="utf-8"))
    check_numbers(page, json.loads(out.stdout))
    assert "value.0.0" in page.numbers and "check.value_rel_error" in page.numbers


def test_a_tripped_gate_and_the_warnings_are_in_the_report(tmp_path):
    page_path = tmp_path / "gate.html"
    out = run_cli("ce", SAMPLE / "probs.csv", SAMPLE / "labels.csv", "--fail-above", "0.1",
                  "-f", "json", "--report", page_path)  # fmt: skip
    assert out.exit_code == 1
    data = json.loads(out.stdout)
    page = Page(page_path.read_text(encoding="utf-8"))
    assert {"gate", "warnings"} <= page.ids
    text = " ".join("".join(page.text).split())
    assert data["gate"]["reason"] in text
    assert all(" ".join(w.split()) in text for w in data["warnings"]) and data["warnings"]


def test_report_without_matplotlib_is_exit_2_with_the_install_line(tmp_path):
    page_path = tmp_path / "r.html"
    script = (
        "import sys; sys.modules['matplotlib'] = None; sys.argv[0] = 'losscli'; "
        "from losscli.entry import main; main()"
    )
    for args in (
        ["ce", "sample_data/logits.csv", "sample_data/labels.csv"],
        ["compare", "ce", "sample_data/logits.csv", "sample_data/logits_b.csv",
         "sample_data/labels.csv"],
    ):  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-c", script, *args, "--report", str(page_path)],
            capture_output=True, text=True, cwd=ROOT, timeout=120,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert done.stdout == ""
        assert done.stderr.strip().splitlines() == [
            "losscli: error: --report needs Matplotlib, which is not installed: "
            "pip install 'losscli[report]'"
        ]
        assert not page_path.exists()


def _report_run(tmp_path, env: dict, *extra) -> subprocess.CompletedProcess:
    args = ["ce", "sample_data/logits.csv", "sample_data/labels.csv", "--hist", "--by-class"]
    return subprocess.run(
        [sys.executable, "-m", "losscli", *args, "--report", str(tmp_path / "r.html"), *extra],
        capture_output=True, text=True, cwd=ROOT, timeout=120, env={**os.environ, **env},
    )  # fmt: skip


def test_the_users_matplotlib_settings_do_not_reach_the_report(tmp_path):
    """A matplotlibrc that asks for LaTeX and text as paths, and a backend that a notebook
    (or a typo) names: the report is drawn with Matplotlib's defaults and losscli's style."""
    config = tmp_path / "mpl"
    config.mkdir()
    (config / "matplotlibrc").write_text("text.usetex: True\nsvg.fonttype: path\n")
    for backend in ("bogus", "module://matplotlib_inline.backend_inline"):
        done = _report_run(tmp_path, {"MPLCONFIGDIR": str(config), "MPLBACKEND": backend})
        assert done.returncode == 0, done.stderr
        page = (tmp_path / "r.html").read_text()
        assert "<text" in page and "<svg" in page  # text kept as text, not LaTeX or paths


def test_a_broken_matplotlib_is_exit_2_with_what_failed(tmp_path):
    broken = tmp_path / "site" / "matplotlib"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise RuntimeError('half installed')\n")
    done = _report_run(tmp_path, {"PYTHONPATH": str(tmp_path / "site")}, "-f", "value")
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "losscli: error: --report cannot import Matplotlib (RuntimeError: half installed): "
        "pip install 'losscli[report]'"
    ]
    assert not (tmp_path / "r.html").exists()


def test_the_run_itself_never_imports_matplotlib(tmp_path):
    """The charts are drawn by the renderer's process; the run's own process, with or without
    --report, does not import Matplotlib (a run without --report starts nothing)."""
    script = (
        "import atexit, sys; sys.argv[0] = 'losscli'; "
        "atexit.register(lambda: print('matplotlib' in sys.modules, file=sys.stderr)); "
        "from losscli.entry import main; main()"
    )
    args = ["ce", "sample_data/logits.csv", "sample_data/labels.csv", "--hist", "-f", "value"]
    for extra in ([], ["--report", str(tmp_path / "r.html")]):
        done = subprocess.run([sys.executable, "-c", script, *args, *extra],
                              capture_output=True, text=True, cwd=ROOT, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stderr.strip() == "False"
    assert (tmp_path / "r.html").stat().st_size > 0


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_without_an_interpreter_to_start_the_page_is_drawn_in_the_run(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python"))  # an embedded Python
    page_path = tmp_path / "r.html"
    out = run_cli("ce", SAMPLE / "logits.csv", SAMPLE / "labels.csv", "--hist", "--by-class",
                  "-f", "json", "--report", page_path)  # fmt: skip
    assert out.exit_code == 0, out.stderr
    page = Page(page_path.read_text(encoding="utf-8"))
    check_numbers(page, json.loads(out.stdout))
    assert {"hist", "by-class"} <= page.ids


def test_report_paths_that_cannot_be_written_are_refused_before_the_work(tmp_path):
    inputs = [SAMPLE / "logits.csv", SAMPLE / "labels.csv"]
    cases = [
        (tmp_path / "missing" / "r.html", "does not exist"),
        (tmp_path / "r.png", "unknown extension"),
        (tmp_path, "unknown extension"),
        (SAMPLE / "labels.csv", "is a file this run reads"),
    ]
    (tmp_path / "dir.html").mkdir()
    cases.append((tmp_path / "dir.html", "is a directory"))
    locked = tmp_path / "locked.html"
    locked.write_text("kept")
    locked.chmod(0o444)
    cases.append((locked, "is read-only"))
    for path, fragment in cases:
        assert_usage_error(run_cli("ce", *inputs, "--report", path), "--report", fragment)
    same = tmp_path / "same.html"
    for option in ("--emit-state", "--grad-out"):
        out = run_cli("ce", *inputs, option, same, "--report", same)
        assert out.exit_code == 2 and not same.exists()
    out = run_cli("compare", "ce", SAMPLE / "logits.csv", SAMPLE / "logits_b.csv",
                  SAMPLE / "labels.csv", "--report", SAMPLE / "logits_b.csv")  # fmt: skip
    assert_usage_error(out, "--report", "is a file this run reads")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.html", "locked.html"]
    assert locked.read_text() == "kept"


def test_merge_refuses_a_report_over_a_state_it_reads(tmp_path):
    state = tmp_path / "s.json"
    run_cli("ce", SAMPLE / "logits.csv", SAMPLE / "labels.csv", "--emit-state", state)
    html = tmp_path / "s.html"
    state.rename(html)  # a state file with an .html name
    assert_usage_error(run_cli("merge", html, "--report", html), "is a file this run reads")


def test_a_run_that_fails_leaves_no_report_and_keeps_an_old_one(tmp_path, files):
    labels = files.csv("bad.csv", [0, 1, 9, 2])
    logits = files.csv("x.csv", np.zeros((4, 5)))
    new = tmp_path / "new.html"
    assert run_cli("ce", logits, labels, "--report", new).exit_code == 2
    old = tmp_path / "old.html"
    old.write_text("an older report")
    assert run_cli("ce", logits, labels, "--report", old).exit_code == 2
    assert old.read_text() == "an older report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "old.html", "x.csv"]
    assert _children() == set()  # the renderers started for those runs are gone


def _children() -> set[int]:
    """The processes this one started that still run (Linux), or an empty set."""
    import gc
    import os
    from pathlib import Path

    gc.collect()
    found = set()
    for task in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        found |= {int(pid) for pid in task.read_text().split()}
    return found


def test_the_report_replaces_an_old_one_keeping_its_mode(tmp_path):
    page_path = tmp_path / "r.html"
    page_path.write_text("old")
    page_path.chmod(0o640)
    out = run_cli("mse", SAMPLE / "y_pred.csv", SAMPLE / "y_true.csv", "--report", page_path)
    assert out.exit_code == 0
    assert page_path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert page_path.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_a_batch_job_writes_its_report(tmp_path):
    page_path = tmp_path / "job.html"
    job = {"loss": "mse", "inputs": [str(SAMPLE / "y_pred.csv"), str(SAMPLE / "y_true.csv")],
           "options": {"report": str(page_path), "hist": True}, "id": 1}  # fmt: skip
    out = run_cli("batch", "-", input=json.dumps(job) + "\n")
    assert out.exit_code == 0, out.stdout
    result = json.loads(out.stdout)
    page = Page(page_path.read_text(encoding="utf-8"))
    check_numbers(page, {k: v for k, v in result.items() if k != "id"})
    assert "hist" in page.ids


def test_the_page_is_the_same_for_the_same_result(pages):
    from losscli.report.page import build as page

    _, data, _ = pages["ce"]
    first = page(data, "ce")
    assert page(json.loads(json.dumps(data)), "ce") == first
    ids = re.findall(r'\sid="([^"]+)"', first)
    assert len(ids) == len(set(ids)), "an id used twice (charts must not share ids)"
    references = re.findall(r'href="#([^"]+)"|url\(#([^)]+)\)', first)
    assert references and {a or b for a, b in references} <= set(ids)


def test_report_is_listed_by_help_options_and_offered_by_merge_and_compare(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert "--report FILE.html" in run_cli("help", "options").stdout
    assert "--report" in run_cli("merge", "--help").stdout
    compare_help = run_cli("compare", "ce", "--help", "--report", "x.html")
    assert "No such option" not in compare_help.stderr


@pytest.mark.parametrize(("rows", "classes"), [(200_000, 10), (4_000, 1_000)])
def test_a_report_of_many_rows_or_classes_stays_small(tmp_path, rows, classes):
    rng = np.random.default_rng(0)
    logits, labels = tmp_path / "x.npy", tmp_path / "y.npy"
    np.save(logits, rng.normal(size=(rows, classes)).astype(np.float32))
    np.save(labels, rng.integers(0, classes, rows))
    page_path = tmp_path / "big.html"
    out = run_cli("ce", logits, labels, "--by-class", "--hist", "--top", "100",
                  "--calibration", "100", "-f", "json", "--report", page_path)  # fmt: skip
    assert out.exit_code == 0, out.stderr
    size = page_path.stat().st_size
    assert size < 1_000_000, size  # the contract says 5 MB
    page = Page(page_path.read_text(encoding="utf-8"))
    data = json.loads(out.stdout)
    check_numbers(page, data)
    assert "top.99.loss" in page.numbers and "calibration.bins.99.count" in page.numbers
    listed = min(classes, 500)  # the table lists 500 classes; the JSON has them all
    assert f"by_class.{listed - 1}.mean" in page.numbers
    assert f"by_class.{listed}.mean" not in page.numbers
