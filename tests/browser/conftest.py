"""The console in a real browser (Debian's Chromium driven by Playwright) against a running stack.

One stack per module: starting gateway, relay, worker and broker costs seconds, and the console's
pages are exercised in order against it, as a user would. Every page is checked for console errors
and failed requests; HTTP errors the API is expected to answer are declared by the test.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from schema.db import upgrade
from tests.fixtures.database import PgServer
from tests.fixtures.pipeline import Pipeline, start_pipeline
from tests.fixtures.services import require_service

ARTIFACTS = Path(__file__).parent / "artifacts"
WIDTHS = {"phone": 360, "desktop": 1280}
# Chromium reports every 4xx/5xx a page fetched as a console error with this text.
_HTTP_ERROR = re.compile(r"Failed to load resource: the server responded with a status of (\d+)")


_UNNAMED_CONTROLS = """() => [...document.querySelectorAll("input, select, textarea, button")]
    .filter((el) => !el.closest("[hidden]"))
    .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute("aria-label") && !el.textContent.trim())
    .map((el) => el.outerHTML.slice(0, 80))"""


def chromium_path() -> str | None:
    for candidate in (os.environ.get("CONDENSE_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


# Per module, not per session: while Playwright's sync API is open its event loop counts as running
# in this thread, and the asyncio tests that run after this directory would fail to start theirs.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    if executable is None:
        require_service("Chromium", "no /usr/bin/chromium (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        require_service("Playwright", str(exc))
    with sync_playwright() as playwright:
        # Root in a container has no user namespace for Chromium's sandbox.
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def stack(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    name = pg_server.create_database()
    url = pg_server.url(name)
    try:
        upgrade(url)
        # The notifier too, sweeping every second: the settings page sends a test event through it.
        run = start_pipeline(
            tmp_path_factory.mktemp("stack"), url, env={"CONDENSE_NOTIFIER__SWEEP_INTERVAL_S": "1"}
        )
        try:
            run.stack.condense("notifier", "notifier")
            yield run
        finally:
            run.stack.stop()
    finally:
        pg_server.drop_database(name)


@dataclass
class Watched:
    """A page whose console errors and failed requests fail the test, unless declared expected."""

    page: Any
    base: str
    problems: list[str] = field(default_factory=list)
    expected_statuses: set[int] = field(default_factory=set)

    def expect_status(self, *statuses: int) -> None:
        """HTTP error statuses the API answers on purpose in this test (a refused key, a bad upload)."""
        self.expected_statuses.update(statuses)

    def goto(self, route: str) -> None:
        self.page.goto(f"{self.base}/console/{route}")

    def shoot(self, name: str) -> None:
        """Screenshots of the page as it is at each width, into tests/browser/artifacts/.

        At each width the page must fit without sideways scrolling (wide tables scroll in their
        own box), and every control must have an accessible name.
        """
        ARTIFACTS.mkdir(exist_ok=True)
        current = self.page.viewport_size
        for label, width in WIDTHS.items():
            self.page.set_viewport_size({"width": width, "height": 900})
            self.page.screenshot(path=str(ARTIFACTS / f"{name}-{label}.png"), full_page=True)
            scroll_width = self.page.evaluate("document.documentElement.scrollWidth")
            assert scroll_width <= width, f"{name} is {scroll_width} px wide at {width} px"
        self.page.set_viewport_size(current)
        unnamed = self.page.evaluate(_UNNAMED_CONTROLS)
        assert not unnamed, f"{name}: controls without a label: {unnamed}"

    def check(self) -> None:
        assert not self.problems, "browser problems:\n" + "\n".join(self.problems)


def watch(page: Any, base: str) -> Watched:
    watched = Watched(page, base)

    def on_console(msg: Any) -> None:
        if msg.type != "error":
            return
        status = _HTTP_ERROR.search(msg.text)
        if status and int(status.group(1)) in watched.expected_statuses:
            return
        # A server without the event streams answers 404 there, once per page; the console polls.
        if status and status.group(1) == "404" and msg.location.get("url", "").endswith("/events"):
            return
        watched.problems.append(f"console error: {msg.text} at {msg.location.get('url', '')}")

    def on_failed(request: Any) -> None:
        # Leaving a page aborts its live event stream on purpose.
        if request.failure == "net::ERR_ABORTED" and request.url.endswith("/events"):
            return
        watched.problems.append(f"request failed: {request.method} {request.url}: {request.failure}")

    def on_response(response: Any) -> None:
        if response.status >= 500:
            watched.problems.append(
                f"server error: {response.status} {response.request.method} {response.url}"
            )

    page.on("console", on_console)
    page.on("pageerror", lambda error: watched.problems.append(f"page error: {error}"))
    page.on("requestfailed", on_failed)
    page.on("response", on_response)
    return watched


@pytest.fixture
def open_page(browser: Any, stack: Pipeline) -> Iterator[Watched]:
    """A fresh tab (its own sessionStorage), checked for problems when the test ends."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    # Short by default, so that a missing element fails in seconds; slow steps pass their own.
    context.set_default_timeout(15_000)
    watched = watch(context.new_page(), stack.base)
    try:
        yield watched
        watched.check()
    finally:
        context.close()
