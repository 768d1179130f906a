"""report.html in a real browser: headless Chromium driven by playwright.

The browser is playwright's own Chromium when ``python -m playwright install chromium`` has
fetched it, else the distribution's (``/usr/bin/chromium``); without either the test is
skipped and says so. The page must draw without a console error and without a request to
anything but the file itself, every section must be there with its figures drawn, and the
timeline must show a labelled band for each of the scenario's faults.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from conftest import FAULT_LABELS

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync"]


def _chromium(playwright) -> str | None:
    """playwright's own Chromium if it was downloaded, else the system's, else None."""
    try:
        own = playwright.chromium.executable_path
    except Exception:  # noqa: BLE001 (playwright raises its own error type when none is installed)
        own = None
    if own and os.path.exists(own):
        return own
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def page_of_report(fault_run, tmp_path_factory):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright for Python is not installed")
    with sync_api.sync_playwright() as p:
        exe = _chromium(p)
        if exe is None:
            pytest.skip("no Chromium: run `python -m playwright install chromium` or install the distribution's "
                        "chromium package")
        browser = p.chromium.launch(executable_path=exe, headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            problems, requests = [], []
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("request", lambda r: requests.append(r.url))
            report = fault_run / "report.html"
            page.goto(report.as_uri())
            page.wait_for_selector("body[data-rendered]", timeout=60_000)
            shot = tmp_path_factory.mktemp("screenshot") / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            yield page, problems, requests, report, shot
        finally:
            browser.close()


def test_the_report_draws_without_a_console_error(page_of_report):
    _page, problems, _requests, _report, _shot = page_of_report
    assert problems == []


def test_the_report_asks_for_nothing_but_itself(page_of_report):
    _page, _problems, requests, report, _shot = page_of_report
    assert [u for u in requests if u != report.as_uri()] == []


def test_every_section_is_rendered_with_drawn_figures(page_of_report):
    page, *_ = page_of_report
    sections = page.eval_on_selector_all("section.report-section", "ss => ss.map(s => s.id)")
    assert {"overview", "timeline", "traffic", "upstreams", "caches", "api"} <= set(sections)
    plots = page.evaluate("""() => Array.from(document.querySelectorAll('div.plot')).map(d => ({
        id: d.dataset.figure, svg: d.querySelectorAll('svg.main-svg').length,
        traces: d.querySelectorAll('g.trace').length + d.querySelectorAll('g.hm, .heatmaplayer image').length}))""")
    assert int(page.get_attribute("body", "data-rendered")) == len(plots)
    figures = {p["id"] for p in plots}
    assert {"timeline", "requests", "status", "latency", "connections", "upstream-node1-http-backend",
            "cache-node1-cache_backend"} <= figures
    assert [p["id"] for p in plots if p["svg"] == 0 or p["traces"] == 0] == []
    # the tables of final API objects are there, and sort when a header is clicked
    assert page.locator("#api table.data").count() >= 3
    first = page.locator("#api table.data").first
    first.locator("th").nth(2).click()
    assert "sorted-asc" in (first.locator("th").nth(2).get_attribute("class") or "")


def test_the_timeline_has_a_labelled_band_for_every_scheduled_fault(page_of_report):
    page, *_ = page_of_report
    labels = page.eval_on_selector_all("#plot-timeline g.annotation text", "ts => ts.map(t => t.textContent)")
    assert labels == [label for _action, label in FAULT_LABELS]
    bands = page.locator("#plot-timeline .shapelayer path").count()
    assert bands == len(FAULT_LABELS)
    # and every other figure has the same bands behind its panels
    counts = page.evaluate("""() => Array.from(document.querySelectorAll('div.plot'))
        .filter(d => d.dataset.figure !== 'timeline')
        .map(d => d.querySelectorAll('.shapelayer path').length)""")
    assert counts and set(counts) == {len(FAULT_LABELS)}


def test_a_screenshot_is_taken(page_of_report):
    *_, shot = page_of_report
    assert Path(shot).stat().st_size > 50_000
