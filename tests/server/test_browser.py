"""A person's view: Debian's Chromium (headless, via Playwright) labels a whole assignment.

The HIT page runs inside an iframe of a stand-in MTurk page on another loopback origin,
as on MTurk: the labels go in by keyboard (with one correction through Back), the server
stores them, and only then does the page post to `{turkSubmitTo}/mturk/externalSubmit`,
which the stand-in records. A page on an origin not in frame-ancestors cannot frame it.
"""

from __future__ import annotations

import html
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import Browser, sync_playwright
from sqlalchemy import func, select

from study_server.db.models import Allocation, AllocationStatus, Label
from testkit.databases import session_for
from testkit.servers import make_settings

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class FakeMTurk(ThreadingHTTPServer):
    """Frames a URL (`/frame?src=...`) and records what is posted to /mturk/externalSubmit."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _FakeMTurkHandler)
        self.submissions: list[dict[str, list[str]]] = []
        # Called as each submission arrives: what the study database holds at that moment.
        self.on_submit: Callable[[], object] = lambda: None
        self.seen_at_submit: list[object] = []
        self.origin = f"http://127.0.0.1:{self.server_address[1]}"


class _FakeMTurkHandler(BaseHTTPRequestHandler):
    server: FakeMTurk

    def do_GET(self) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        src = html.escape(query.get("src", [""])[0], quote=True)
        self._reply(
            f'<!doctype html><title>MTurk</title><iframe id="hit" src="{src}" width="900" '
            'height="800"></iframe>'
        )

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        form = urllib.parse.parse_qs(self.rfile.read(length).decode())
        if self.path.startswith("/mturk/externalSubmit"):
            self.server.seen_at_submit.append(self.server.on_submit())
            self.server.submissions.append(form)
        self._reply("<!doctype html><title>Submitted</title><p>HIT submitted</p>")

    def _reply(self, body: str) -> None:
        data = body.encode()
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_mturk() -> Iterator[FakeMTurk]:
    server = FakeMTurk()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        browser.close()


def test_a_worker_labels_a_whole_assignment_by_keyboard_inside_mturks_iframe(
    browser, database_url, study, fake_mturk, live_server_factory, tmp_path
):
    settings = make_settings(
        database_url, frame_ancestors=[fake_mturk.origin], turk_submit_hosts=[fake_mturk.origin]
    )
    fake_mturk.on_submit = lambda: _label_count(database_url)
    server = live_server_factory(settings)
    hit = f"{server.url}/hit/{study.slug}?" + urllib.parse.urlencode(
        {
            "assignmentId": "ASSIGN-B1",
            "hitId": "HIT1",
            "workerId": "WORKER-B1",
            "turkSubmitTo": fake_mturk.origin,
        }
    )
    page = browser.new_page()
    page.goto(f"{fake_mturk.origin}/frame?src={urllib.parse.quote(hit, safe='')}")
    frame = page.frame_locator("#hit")
    start = frame.locator("#start")
    start.wait_for(state="visible")
    frame.locator("#start:enabled").click()
    image = frame.locator("#stimulus")
    image.evaluate("img => img.decode()")
    shown = image.evaluate(
        "img => [getComputedStyle(img).imageRendering, img.clientWidth, img.naturalWidth]"
    )
    assert shown == ["pixelated", 280, 28]  # a 28x28 image, 10x larger, no smoothing
    page.screenshot(path=str(tmp_path / "task.png"))  # to look at: what a worker sees
    typed = ["3", "1", "4", "1", "5"]
    for key in typed[:3]:
        page.keyboard.press(key)
    assert frame.locator("#current").inner_text() == "4"
    page.keyboard.press("Backspace")  # back to item 3 (position 2) to correct it
    assert frame.locator("#current").inner_text() == "3"
    assert (
        frame.locator("#choices button.chosen").inner_text() == "4"
    )  # the earlier answer is shown
    page.keyboard.press("7")
    for key in typed[3:]:
        page.keyboard.press(key)
    frame.locator("#review").wait_for(state="visible")
    page.screenshot(path=str(tmp_path / "review.png"))
    page.keyboard.press("Enter")
    _wait_for(lambda: fake_mturk.submissions, page)
    assert fake_mturk.submissions == [{"assignmentId": ["ASSIGN-B1"], "labelsStored": ["true"]}]
    assert fake_mturk.seen_at_submit == [5]  # the labels were stored before MTurk heard of it
    page.close()
    session = session_for(database_url)
    try:
        labels = [
            tuple(r)
            for r in session.execute(select(Label.position, Label.label).order_by(Label.position))
        ]
        assert labels == [(0, 3), (1, 1), (2, 7), (3, 1), (4, 5)]
        allocation = session.scalar(select(Allocation))
        assert (allocation.status, allocation.mturk_assignment_id) == (
            AllocationStatus.submitted,
            "ASSIGN-B1",
        )
        response_ms = session.scalars(select(Label.response_ms)).all()
        assert all(ms is not None and ms >= 0 for ms in response_ms)
    finally:
        session.close()


def test_a_lab_participant_needs_only_the_keyboard(
    browser, sqlite_database_url, live_server_factory, small_bundle
):
    from testkit.studies import import_study

    study = import_study(sqlite_database_url, small_bundle, items_per_assignment=5)
    server = live_server_factory(make_settings(sqlite_database_url))
    page = browser.new_page()
    page.goto(f"{server.url}/lab/{study.slug}")
    page.keyboard.type("lab-42")
    page.keyboard.press("Enter")
    page.locator("#start:enabled").wait_for()
    page.keyboard.press("Enter")
    for key in "02468":
        page.keyboard.press(key)
    page.locator("#review").wait_for(state="visible")
    page.keyboard.press("Enter")
    page.locator("#done").wait_for(state="visible")
    assert "saved" in page.locator("#done-text").inner_text()
    page.close()
    session = session_for(sqlite_database_url)
    try:
        assert [
            tuple(r)
            for r in session.execute(select(Label.position, Label.label).order_by(Label.position))
        ] == [(0, 0), (1, 2), (2, 4), (3, 6), (4, 8)]
    finally:
        session.close()


def test_a_site_not_in_frame_ancestors_cannot_frame_the_page(
    browser, sqlite_database_url, live_server_factory, small_bundle, fake_mturk
):
    from testkit.studies import import_study

    study = import_study(sqlite_database_url, small_bundle, items_per_assignment=5)
    server = live_server_factory(
        make_settings(sqlite_database_url)
    )  # frame-ancestors: MTurk's hosts only
    page = browser.new_page()
    refused = []
    page.on(
        "console",
        lambda message: refused.append(message.text) if "frame-ancestors" in message.text else None,
    )
    page.goto(
        f"{fake_mturk.origin}/frame?src="
        + urllib.parse.quote(f"{server.url}/lab/{study.slug}", safe="")
    )
    page.wait_for_timeout(1000)
    framed = page.frames[1]
    assert (
        framed.url != f"{server.url}/lab/{study.slug}"
        or framed.locator("#participant").count() == 0
    )
    assert refused, "Chromium should report the frame-ancestors refusal"
    page.close()


def _label_count(url: str) -> int:
    session = session_for(url)
    try:
        return session.scalar(select(func.count()).select_from(Label))
    finally:
        session.close()


def _wait_for(condition, page, timeout_ms: int = 15_000) -> None:
    waited = 0
    while not condition():
        if waited >= timeout_ms:
            raise AssertionError("timed out waiting for the MTurk submission")
        page.wait_for_timeout(100)
        waited += 100
