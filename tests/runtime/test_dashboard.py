"""The dashboard in a real browser (Debian's chromium) against a real `asgiscale run`.

The page must show what `/status` says: the test reads the numbers off the rendered page
and compares them with `/status` fetched with httpx once the load has stopped. A
screenshot is kept in `.artifacts/dashboard.png` for a human to look at.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.utils import REPO, AsgiscaleProcess, wait_for

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO / ".artifacts"
# The probe answers `/?status=N` with N.
MIX = {200: 60, 404: 20, 500: 10}
TIMEOUT_MS = 15_000

# Everything the test compares, read in one go so that it all comes from the same render.
READ_PAGE = """() => {
  const text = (id) => document.querySelector(`[data-testid="${id}"]`).textContent.trim();
  return {
    refreshes: Number(document.body.dataset.refreshes || 0),
    connection: document.querySelector('[data-testid="connection"]').dataset.state,
    total: text("total-requests"),
    errors: text("errors"),
    by_status: text("by-status"),
    in_flight: text("in-flight"),
    worker_count: text("worker-count"),
    ready: document.querySelector('[data-testid="ready"]').dataset.ready,
    stage: text("stage"),
    app: text("app"),
    rows: [...document.querySelectorAll("tr[data-pid]")].map((row) => ({
      pid: Number(row.dataset.pid),
      state: row.dataset.state,
      requests: row.querySelector('[data-col="requests"]').textContent.trim(),
    })),
    events: [...document.querySelectorAll("#events li[data-event]")].map((li) => [li.dataset.event, li.dataset.pid]),
    marks: [...document.querySelectorAll("#chart-rps g > title")].map((t) => t.textContent),
  };
}"""


@pytest.fixture
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.skip(f"playwright is missing ({exc}; pip install playwright)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=30_000)
        try:
            yield browser
        finally:
            browser.close()


def open_dashboard(browser: Any, url: str) -> tuple[Any, list[str]]:
    """A 1280x800 page showing the dashboard, and the list its script errors are added to."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    return page, errors


def wait_refreshes(page: Any, count: int) -> None:
    """Until the page has rendered `count` more answers of /status than it had."""
    done = page.evaluate("() => Number(document.body.dataset.refreshes || 0)")
    page.wait_for_function(f"() => Number(document.body.dataset.refreshes || 0) >= {done + count}")


def number(text: str) -> int:
    return int(text.replace(",", ""))


def screenshot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name))


def test_dashboard_shows_the_numbers_of_status(probe_dir: Path, browser: Any) -> None:
    with AsgiscaleProcess(["probe:app", "--workers", "2"], probe_dir) as server:
        before = server.wait_workers(2)
        admin = server.admin_url
        # One crash first, so the page has a crash and its replacement to show.
        with pytest.raises(httpx.HTTPError):
            httpx.get(server.url + "/exit?code=7", headers={"connection": "close"}, timeout=10)
        victim = wait_for(lambda: next(iter(before - server.ready_workers()), None), 10, "the worker to exit")
        workers = server.wait_workers(2, excluding={victim})
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for code, count in MIX.items():
                for _ in range(count):
                    assert client.get(f"/?status={code}").status_code == code
                    time.sleep(0.03)  # a few seconds of traffic, for the charts of the screenshot

        page, errors = open_dashboard(browser, admin + "/")
        wait_refreshes(page, 2)  # every answer it renders was given after the load stopped
        shown = page.evaluate(READ_PAGE)
        status = httpx.get(admin + "/status", timeout=10).json()
        # Stable numbers: what the page showed is still what /status says.
        assert page.evaluate(READ_PAGE)["total"] == shown["total"]

        assert shown["connection"] == "ok"
        assert number(shown["total"]) == status["totals"]["requests"] == sum(MIX.values())
        assert number(shown["errors"]) == status["totals"]["errors"] == MIX[500]
        assert shown["by_status"] == "200: 60 · 404: 20 · 500: 10"
        assert status["totals"]["by_status"] == {str(code): count for code, count in MIX.items()}
        assert number(shown["in_flight"]) == status["totals"]["in_flight"] == 0
        assert number(shown["worker_count"]) == len(status["workers"]) == 2
        assert shown["ready"] == "true" and status["supervisor"]["ready"] is True
        assert shown["stage"] == status["supervisor"]["stage"] == "running"
        assert shown["app"] == status["app"] == "probe:app"
        rows = {row["pid"]: row for row in shown["rows"]}
        assert set(rows) == {w["pid"] for w in status["workers"]} == workers
        for worker in status["workers"]:
            assert rows[worker["pid"]]["state"] == worker["state"] == "ready"
            assert number(rows[worker["pid"]]["requests"]) == worker["requests"]
        assert ["crash", str(victim)] in shown["events"]
        assert any("crash" in mark and str(victim) in mark for mark in shown["marks"])
        assert errors == []
        screenshot(page, "dashboard.png")
        page.close()
        assert server.stop() == 0


def test_dashboard_says_when_the_admin_server_is_unreachable(probe_dir: Path, browser: Any) -> None:
    with AsgiscaleProcess(["probe:app", "--workers", "1"], probe_dir) as server:
        server.wait_workers(1)
        page, errors = open_dashboard(browser, server.admin_url + "/")
        wait_refreshes(page, 1)
        banner = page.get_by_test_id("unreachable")
        assert not banner.is_visible()
        assert server.stop() == 0

        page.wait_for_selector('[data-testid="connection"][data-state="down"]')
        assert banner.is_visible()
        assert "Admin server unreachable" in banner.text_content()
        assert page.get_by_test_id("connection").text_content() == "unreachable"
        # The last numbers stay on the page, greyed out, for the post-mortem.
        assert page.get_by_test_id("worker-count").text_content() == "1"
        assert errors == []
        screenshot(page, "dashboard-unreachable.png")
        page.close()
