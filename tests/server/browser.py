"""Debian's Chromium through Playwright, for the browser tests: a clean page is one with no
console error, no uncaught page error and no failed request (a network failure, or an answer
of 400 or more), unless a test names what it expects.
"""

from __future__ import annotations

import re
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@dataclass
class PageProblems:
    """What went wrong on a page; `expected` patterns are what a test provokes on purpose."""

    expected: list[re.Pattern[str]] = field(default_factory=list)
    found: list[str] = field(default_factory=list)

    def note(self, what: str) -> None:
        if not any(pattern.search(what) for pattern in self.expected):
            self.found.append(what)

    def assert_clean(self) -> None:
        assert not self.found, "the page was not clean:\n" + "\n".join(self.found)


def watch(page: Page, *expected: str) -> PageProblems:
    """Record the page's console errors, page errors and failed requests."""
    problems = PageProblems([re.compile(pattern) for pattern in expected])
    page.on(
        "console",
        lambda message: (
            problems.note(f"console {message.type}: {message.text}")
            if message.type == "error"
            else None
        ),
    )
    page.on("pageerror", lambda error: problems.note(f"page error: {error}"))
    page.on(
        "requestfailed",
        lambda request: problems.note(
            f"request failed: {request.method} {request.url} ({request.failure})"
        ),
    )
    page.on(
        "response",
        lambda response: (
            problems.note(f"HTTP {response.status}: {response.request.method} {response.url}")
            if response.status >= 400
            else None
        ),
    )
    return problems


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        browser.close()


class FakeMTurk(ThreadingHTTPServer):
    """Frames a URL (`/frame?src=...`) and records what is posted to /mturk/externalSubmit."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _FakeMTurkHandler)
        self.submissions: list[dict[str, list[str]]] = []
        # Called as each submission arrives: what the study database holds at that moment.
        self.on_submit: Callable[[], object] = lambda: None
        self.seen_at_submit: list[object] = []
        self.scheme = "http"

    @property
    def origin(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server_address[1]}"


class _FakeMTurkHandler(BaseHTTPRequestHandler):
    server: FakeMTurk

    def do_GET(self) -> None:
        if not self.path.startswith("/frame"):
            self._reply("<!doctype html><title>none</title>", status=404)
            return
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        src = query.get("src", [""])[0].replace("&", "&amp;").replace('"', "&quot;")
        self._reply(
            '<!doctype html><title>MTurk</title><link rel="icon" href="data:,">'
            f'<iframe id="hit" src="{src}" width="900" height="800"></iframe>'
        )

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        form = urllib.parse.parse_qs(self.rfile.read(length).decode())
        if self.path.startswith("/mturk/externalSubmit"):
            self.server.seen_at_submit.append(self.server.on_submit())
            self.server.submissions.append(form)
        self._reply(
            '<!doctype html><title>Submitted</title><link rel="icon" href="data:,">'
            "<p>HIT submitted</p>"
        )

    def _reply(self, body: str, status: int = 200) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def run_fake_mturk(wrap: Callable[[FakeMTurk], None] | None = None) -> Iterator[FakeMTurk]:
    server = FakeMTurk()
    if wrap is not None:
        wrap(server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def wait_for(condition: Callable[[], object], page: Page, timeout_ms: int = 15_000) -> None:
    waited = 0
    while not condition():
        if waited >= timeout_ms:
            raise AssertionError("timed out waiting for the condition")
        page.wait_for_timeout(100)
        waited += 100
