"""--report pages in a real browser (Chromium through Playwright), offline: each kind of
report loads from a file:// URL with no request beyond the file, no console message and no
page error; its sections are there with the JSON's numbers; hostile names run nothing and
show as text; it fits a phone's width; it renders in the dark colour scheme and prints.

Screenshots (1280x800 and 390x844, full page) go to $LOSSCLI_ARTIFACTS where set, else to a
temporary folder; with LOSSCLI_UPDATE_DOCS_SCREENSHOTS=1 the ce report's two screenshots
replace docs/report-1280.png and docs/report-390.png.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli
from tests.reports import HOSTILE, Page, at, hostile_inputs, make

pytest.importorskip("matplotlib", reason="--report needs pip install 'losscli[report]'")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip(
        "no browser: install Debian's chromium (apt-get install chromium) and Playwright "
        "(pip install playwright; no browser download is needed)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="no Playwright: pip install playwright (and apt-get install chromium)",
)

ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SECTIONS = {
    "ce": ["summary", "by-class", "hist", "top", "calibration", "gradient", "inputs"],
    "mse-group": ["summary", "by-group", "hist", "gradient", "inputs"],
    "merge": ["summary", "by-class", "hist", "top", "gradient", "inputs"],
    "compare": ["summary", "difference", "by-class", "calibration", "inputs"],
}


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    folder = os.environ.get("LOSSCLI_ARTIFACTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        return Path(folder)
    return tmp_path_factory.mktemp("screenshots")


class Visit:
    """A page opened offline, with everything it asked for and said."""

    def __init__(self, browser, path: Path, **context) -> None:
        self.context = browser.new_context(**context)
        self.context.set_offline(True)
        self.requests: list[str] = []
        self.messages: list[str] = []
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.context.route(lambda url: not url.startswith("file:"), self._refuse)
        self.page = self.context.new_page()
        self.page.on("console", lambda m: self.messages.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", self._dialog)
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(path.as_uri(), wait_until="load")

    def _refuse(self, route) -> None:
        route.abort()

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def check_quiet(self, path: Path) -> None:
        assert self.requests == [path.as_uri()], self.requests  # the file, nothing else
        assert self.messages == [] and self.errors == [] and self.dialogs == []

    def close(self) -> None:
        self.context.close()


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reports")
    return {kind: make(kind, folder) for kind in SECTIONS}


@pytest.mark.parametrize("kind", SECTIONS)
def test_each_report_loads_offline_quietly_with_its_sections_and_numbers(
    browser, reports, artifacts, kind
):
    path, data, _ = reports[kind]
    wide = Visit(browser, path, viewport={"width": 1280, "height": 800})
    try:
        wide.check_quiet(path)
        for section in SECTIONS[kind]:
            assert wide.page.locator(f"section#{section} h2").is_visible(), section
        numbers = wide.page.eval_on_selector_all(
            "data[data-key]", "els => els.map(e => [e.dataset.key, e.value, e.textContent])"
        )
        assert len(numbers) > 10
        for key, value, shown in numbers:
            assert json.loads(value) == at(data, key), key
            assert shown.strip(), key  # text, not only an attribute
        assert wide.page.locator("figure.chart svg").count() >= 1
        boxes = wide.page.eval_on_selector_all(
            "figure.chart svg", "els => els.map(e => e.getBoundingClientRect().height)"
        )
        assert all(height > 100 for height in boxes), boxes
        wide.page.screenshot(path=artifacts / f"{kind}-1280.png")
    finally:
        wide.close()
    phone = Visit(browser, path, viewport={"width": 390, "height": 844}, is_mobile=True,
                  device_scale_factor=1)  # fmt: skip
    try:
        phone.check_quiet(path)
        width = phone.page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{kind}: the page is {width} px wide at 390 px"
        phone.page.screenshot(path=artifacts / f"{kind}-390.png", full_page=True)
    finally:
        phone.close()
    if kind == "ce" and os.environ.get("LOSSCLI_UPDATE_DOCS_SCREENSHOTS") == "1":
        shutil.copyfile(artifacts / "ce-1280.png", ROOT / "docs" / "report-1280.png")
        shutil.copyfile(artifacts / "ce-390.png", ROOT / "docs" / "report-390.png")


def test_hostile_names_run_nothing_and_show_as_text(browser, tmp_path):
    logits, labels = hostile_inputs(tmp_path)
    path = tmp_path / "hostile.html"
    out = run_cli("ce", logits, labels, "--by-class", "--top", "3", "--calibration", "5",
                  "--hist", "--report", path, "-f", "json")  # fmt: skip
    assert out.exit_code == 0, out.stderr
    visit = Visit(browser, path, viewport={"width": 1280, "height": 800})
    try:
        visit.check_quiet(path)
        assert visit.page.locator("script, img, iframe").count() == 0
        table = visit.page.locator("section#by-class table").inner_text()
        chart = visit.page.locator("section#by-class svg").text_content()
        for name in HOSTILE:
            assert name in table
            assert name[:20] in chart  # chart labels are cut at 24 characters
        assert "lo<g&\"it's\\x02.csv" in visit.page.locator("section#inputs").inner_text()
    finally:
        visit.close()
    assert Page(path.read_text(encoding="utf-8")).ids >= {"by-class", "top"}


def test_the_dark_scheme_inverts_the_charts_and_print_makes_a_pdf(browser, reports, artifacts):
    path = reports["ce"][0]
    dark = Visit(browser, path, viewport={"width": 1280, "height": 800}, color_scheme="dark")
    try:
        dark.check_quiet(path)
        page = dark.page
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(17, 20, 24)", background
        chart_filter = page.eval_on_selector("figure.chart svg", "e => getComputedStyle(e).filter")
        assert "invert(1)" in chart_filter
        page.screenshot(path=artifacts / "ce-dark-1280.png", full_page=True)
        pdf = page.pdf(format="A4")
        assert pdf.startswith(b"%PDF") and len(pdf) > 20_000
        (artifacts / "ce.pdf").write_bytes(pdf)
    finally:
        dark.close()
