"""Real-browser test helpers: Debian's chromium driven by Playwright, and static files
served over a real loopback HTTP server.

Playwright never downloads a browser here: it launches the system chromium through
``executable_path`` (``make browser`` installs it). A missing chromium fails the test
instead of skipping it, since a skipped browser test proves nothing.

Use from a test module::

    from tests.browser import browser, page  # noqa: F401 - pytest fixtures
"""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

__all__ = ["SCREENSHOTS", "StaticSite", "browser", "chromium_path", "page", "save_screenshot"]

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"


def chromium_path() -> str | None:
    """The system chromium, or None."""
    found = shutil.which("chromium")
    if found:
        return found
    fallback = Path("/usr/bin/chromium")
    return str(fallback) if fallback.exists() else None


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """One headless chromium for the session."""
    executable = chromium_path()
    if executable is None:
        pytest.fail("chromium is not installed: run `make browser`", pytrace=False)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page in its own browser context; console errors end up in the test's output."""
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    fresh = context.new_page()
    fresh.on("console", lambda message: print(f"[browser {message.type}] {message.text}"))
    fresh.on("pageerror", lambda error: print(f"[browser pageerror] {error}"))
    yield fresh
    context.close()


def save_screenshot(page: Page, request: pytest.FixtureRequest) -> Path:
    """Save a full-page screenshot as test-artifacts/screenshots/<test name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.\[\]-]", "_", request.node.name)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


class _Handler(SimpleHTTPRequestHandler):
    """Files from ``directory``, plus in-memory ``pages`` (path → HTML); no request log."""

    def __init__(self, *args: Any, pages: dict[str, str], **kwargs: Any) -> None:
        self._pages = pages
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        html = self._pages.get(self.path.split("?", 1)[0])
        if html is None:
            super().do_GET()
            return
        body = html.encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class StaticSite:
    """A directory served over HTTP on 127.0.0.1 (a secure context for WebCrypto, and
    http:// so ES modules and fetch work), with extra in-memory pages."""

    def __init__(self, directory: Path, pages: dict[str, str] | None = None) -> None:
        handler = partial(_Handler, directory=str(directory), pages=dict(pages or {}))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> StaticSite:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
