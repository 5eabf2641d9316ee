"""Browser fixtures: Debian's Chromium (never a downloaded browser) driven by Playwright, one
browser and one live local stack per test module, and screenshots under .local/screenshots/.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, sync_playwright

from functions.cli.client import FanoutClient
from functions.local.stack import LocalStack
from tests.e2e.conftest import FAST_ENV, client_for, print_logs, shared_stack
from tests.support.background_stops import stop_in_background
from tests.support.reports import failed

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / ".local" / "screenshots"
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}
# No embedding model: a `documents` job's collection is searched full-text only.
BROWSER_ENV = {**FAST_ENV, "FANOUT_EMBEDDER": "none"}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests drive Debian's Chromium "
            "(apt-get install chromium; `make test` installs it)",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """One stack for the module: its tests use jobs of their own (own client ids)."""
    running = shared_stack(tmp_path_factory, "browser", BROWSER_ENV)
    yield running
    stop_in_background(running)  # its tests print its logs when they fail


@pytest.fixture
def client(stack: LocalStack, request: pytest.FixtureRequest) -> Iterator[FanoutClient]:
    """The stack's HTTP client; the stack's process logs are printed if the test fails."""
    yield client_for(stack)
    if failed(request.node):
        print_logs(stack)


@pytest.fixture
def context(browser: Browser, stack: LocalStack) -> Iterator[BrowserContext]:
    """A fresh browser profile (cookies, storage) per test, at a desktop size."""
    opened = browser.new_context(base_url=stack.url("jobs_api"), viewport=DESKTOP)
    opened.set_default_timeout(15_000)
    yield opened
    opened.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    opened: Page = context.new_page()
    return opened


def screenshot(page: Page, name: str) -> Path:
    """Save the whole page as .local/screenshots/<name>.png (stable names: reruns replace)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
