"""Helpers of the report tests: make each kind of report on sample_data, and read a page's
numbers and structure with the standard library's HTML parser."""

from __future__ import annotations

import contextlib
import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from tests.conftest import ROOT, run_cli

HOSTILE = ("<script>alert(1)</script>", "<img src=x onerror=alert(1)>")


class Page(HTMLParser):
    """A report page parsed: its tags, the ids, the numbers (``data-key`` -> JSON text of
    ``value``), the headings and the text."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.ids: set[str] = set()
        self.numbers: dict[str, list[str]] = {}
        self.headings: list[str] = []
        self.attributes: list[tuple[str, str, str]] = []  # (tag, name, value)
        self.text: list[str] = []
        self._heading: list[str] | None = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append(tag)
        values = dict(attrs)
        if "id" in values:
            self.ids.add(values["id"])
        if tag == "data":
            self.numbers.setdefault(values["data-key"], []).append(values["value"])
        if tag in ("h1", "h2"):
            self._heading = []
        self.attributes += [(tag, name, value or "") for name, value in attrs]

    def handle_endtag(self, tag) -> None:
        if tag in ("h1", "h2") and self._heading is not None:
            self.headings.append("".join(self._heading).strip())
            self._heading = None

    def handle_data(self, data) -> None:
        self.text.append(data)
        if self._heading is not None:
            self._heading.append(data)


def at(data: Any, key: str) -> Any:
    """The value at a dotted path of a JSON object (``by_class.2.mean``)."""
    for part in key.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


def check_numbers(page: Page, data: dict[str, Any]) -> None:
    """Every number of the page equals the one at its path in the JSON object."""
    assert page.numbers, "the page has no numbers with their JSON"
    for key, values in page.numbers.items():
        expected = at(data, key)
        for value in values:
            assert json.loads(value) == expected, (key, value, expected)


def make(kind: str, folder: Path, *extra: str) -> tuple[Path, dict[str, Any], str]:
    """A report of ``kind`` (ce, mse-group, merge, compare) in ``folder``, run from the
    repository's root as the README's examples are: (its path, the JSON object of the same
    run, the page's HTML)."""
    with contextlib.chdir(ROOT):
        return _make(kind, folder, *extra)


def _make(kind: str, folder: Path, *extra: str) -> tuple[Path, dict[str, Any], str]:
    page = folder / f"{kind}.html"
    sample = Path("sample_data")
    if kind == "ce":
        args = ["ce", sample / "logits.csv", sample / "labels.csv", "--by-class",
                "--calibration", "10", "--top", "5", "--hist"]  # fmt: skip
    elif kind == "mse-group":
        args = ["mse", sample / "eval.csv", "--pred-cols", "cat", "--target-cols", "label",
                "--group-by", "split", "--hist"]  # fmt: skip
    elif kind == "merge":
        states = []
        for i, logits in enumerate(("logits.csv", "logits_b.csv")):
            state = folder / f"state{i}.json"
            out = run_cli("ce", sample / logits, sample / "labels.csv", "--emit-state", state,
                          "-f", "value")  # fmt: skip
            assert out.exit_code == 0, out.stderr
            states.append(state)
        args = ["merge", *states, "--by-class", "--hist", "--top", "3"]
    elif kind == "compare":
        args = ["compare", "ce", sample / "logits.csv", sample / "logits_b.csv",
                sample / "labels.csv", "--by-class", "--calibration", "5"]  # fmt: skip
    else:
        raise ValueError(kind)
    out = run_cli(*args, *extra, "-f", "json", "--report", page)
    assert out.exit_code == 0, out.stderr
    return page, json.loads(out.stdout), page.read_text(encoding="utf-8")


def hostile_inputs(folder: Path) -> tuple[Path, Path]:
    """Logits whose header (the class names) and file name are hostile, and their labels."""
    names = [*HOSTILE, "a&b\"q'$x$", "ctl\x01x", "$"]
    logits = folder / "lo<g&\"it's\x02.csv"
    rows = ["1,2,3,4,5", "3,1,0,2,1", "0,0,5,1,2", "2,2,2,2,9", "1,0,0,0,0", "0,3,0,0,1"]
    logits.write_text(",".join(names) + "\n" + "\n".join(rows) + "\n")
    labels = folder / "y<&>.csv"
    labels.write_text("0\n1\n2\n4\n3\n1\n")
    return logits, labels
