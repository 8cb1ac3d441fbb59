"""A person's view: Debian's Chromium (headless, via Playwright) labels a whole assignment.

The HIT page runs inside an iframe of a stand-in MTurk page on another loopback origin,
as on MTurk: the consent text comes first and nothing is allocated before "I agree"; the
labels go in by keyboard (with one correction through Back), the server stores them, the
debrief is shown, and only then does the page post to `{turkSubmitTo}/mturk/externalSubmit`,
which the stand-in records. Declining stores nothing but the refusal; the preview shows the
consent text. A page on an origin not in frame-ancestors cannot frame it.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from study_server.db.models import Allocation, AllocationStatus, Event, Label, LabelDraft, Worker
from testkit.databases import session_for
from testkit.servers import make_settings
from testkit.studies import attach_texts, consent_sha256, import_study, invite, register_hits
from tests.server.browser import FakeMTurk, browser, run_fake_mturk, wait_for, watch

pytestmark = pytest.mark.browser
__all__ = ["browser"]  # the module-wide Chromium fixture


@pytest.fixture
def fake_mturk() -> Iterator[FakeMTurk]:
    yield from run_fake_mturk()


@pytest.fixture
def study_in(small_bundle):
    def make(url):
        study = import_study(url, small_bundle, items_per_assignment=5)
        register_hits(url, study.slug, ["HIT0"])
        return study

    return make


def test_consent_then_labels_by_keyboard_then_debrief_then_mturk_inside_its_iframe(
    browser, database_url, study, fake_mturk, live_server_factory, tmp_path
):
    settings = make_settings(
        database_url, frame_ancestors=[fake_mturk.origin], turk_submit_hosts=[fake_mturk.origin]
    )
    fake_mturk.on_submit = lambda: _label_count(database_url)
    server = live_server_factory(settings)
    page = browser.new_page()
    problems = watch(page)
    page.goto(framed_hit(fake_mturk, server.url, study.slug, "ASSIGN-B1", "HIT1", "WORKER-B1"))
    frame = page.frame_locator("#hit")
    consent = frame.locator("#consent-text")
    consent.wait_for(state="visible")
    assert "Consent to take part" in consent.inner_text()
    assert frame.locator("#start").is_hidden()
    page.screenshot(path=str(tmp_path / "consent.png"))
    assert _allocations(database_url) == []  # reading the consent text allocates nothing
    frame.locator("#agree").click()
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
    debrief = frame.locator("#debrief-text")
    debrief.wait_for(state="visible")
    assert "about this study" in debrief.inner_text()
    assert (
        _label_count(database_url) == 5 and fake_mturk.submissions == []
    )  # stored, not handed off
    page.screenshot(path=str(tmp_path / "debrief.png"))
    frame.locator("#debrief-continue").click()
    wait_for(lambda: fake_mturk.submissions, page)
    assert fake_mturk.submissions == [{"assignmentId": ["ASSIGN-B1"], "labelsStored": ["true"]}]
    assert fake_mturk.seen_at_submit == [5]  # the labels were stored before MTurk heard of it
    problems.assert_clean()
    page.close()
    ((consent_sha, consented_at, debrief_id, debriefed_at),) = _allocations(database_url)
    assert consent_sha == consent_sha256(database_url, study.slug)
    assert consented_at is not None and debrief_id is not None and debriefed_at is not None
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


def test_a_lab_participant_with_a_printed_code_needs_only_the_keyboard(
    browser, sqlite_database_url, live_server_factory, small_bundle
):
    study = import_study(sqlite_database_url, small_bundle, items_per_assignment=5)
    (code,) = invite(sqlite_database_url, study.slug)
    server = live_server_factory(make_settings(sqlite_database_url))
    page = browser.new_page()
    problems = watch(page)
    page.goto(f"{server.url}/lab/{study.slug}")
    # Chromium applies `autofocus` at a later rendering step than the load event that goto
    # waits for: on a busy machine the first keys went to the document, and the code lost its
    # first character (CI, stop 18). A person starts typing once the cursor shows.
    page.locator("#code:focus").wait_for()
    page.keyboard.type(code.lower().replace("-", " "))  # typed as it comes, read all the same
    page.keyboard.press("Enter")
    page.locator("#consent-text").wait_for(state="visible")
    _tab_to(page, "agree")
    page.keyboard.press("Enter")
    page.locator("#start:enabled").wait_for()
    page.keyboard.press("Enter")
    for key in "02468":
        page.keyboard.press(key)
    page.locator("#review").wait_for(state="visible")
    page.keyboard.press("Enter")
    page.locator("#debrief-text").wait_for(state="visible")
    _tab_to(page, "debrief-continue")
    page.keyboard.press("Enter")
    page.locator("#done").wait_for(state="visible")
    assert "saved" in page.locator("#done-text").inner_text()
    problems.assert_clean()  # no console error: the code form's pattern compiles, no 404s
    page.close()
    session = session_for(sqlite_database_url)
    try:
        assert [
            tuple(r)
            for r in session.execute(select(Label.position, Label.label).order_by(Label.position))
        ] == [(0, 0), (1, 2), (2, 4), (3, 6), (4, 8)]
    finally:
        session.close()


def test_the_code_forms_pattern_is_checked_by_the_browser(
    browser, sqlite_database_url, live_server_factory, small_bundle
):
    """Chromium compiles `pattern` with the v flag; a pattern it rejects is never checked."""
    study = import_study(sqlite_database_url, small_bundle, items_per_assignment=5)
    server = live_server_factory(make_settings(sqlite_database_url))
    page = browser.new_page()
    problems = watch(page)
    page.goto(f"{server.url}/lab/{study.slug}")
    field = page.locator("#code")
    field.fill("not a code!")
    assert field.evaluate("input => input.validity.patternMismatch") is True
    field.fill("K7QM-3XHD-9PRA")
    assert field.evaluate("input => input.validity.valid") is True
    problems.assert_clean()
    page.close()


def test_an_unknown_or_spent_code_is_refused_with_a_reason(
    browser, sqlite_database_url, live_server_factory, small_bundle
):
    study = import_study(sqlite_database_url, small_bundle, items_per_assignment=5)
    server = live_server_factory(make_settings(sqlite_database_url))
    page = browser.new_page()
    problems = watch(page, r"HTTP 403: GET .*/lab/", r"status of 403")
    page.goto(f"{server.url}/lab/{study.slug}?code=ABCD-EFGH-JKMN")
    assert "not valid for this study" in page.locator(".error").inner_text()
    problems.assert_clean()
    page.close()


def test_a_reload_loses_nothing(browser, sqlite_database_url, live_server_factory, make_bundle):
    """Label 10 of 12, reload: the page resumes at the 11th image with the first 10 answers
    and their response times; after finishing, exactly the assignment's labels are stored."""
    study = import_study(
        sqlite_database_url, make_bundle(n_adversarial=24), items_per_assignment=12
    )
    (code,) = invite(sqlite_database_url, study.slug)
    server = live_server_factory(make_settings(sqlite_database_url))
    page = browser.new_page()
    problems = watch(page)
    page.goto(f"{server.url}/lab/{study.slug}?code={code}")
    page.locator("#agree").click()
    page.locator("#start:enabled").click()
    typed = "3141592653"
    for key in typed:
        page.keyboard.press(key)
    assert page.locator("#current").inner_text() == "11"
    wait_for(lambda: _drafts(sqlite_database_url)[0] == 10, page)
    _, before = _drafts(sqlite_database_url)
    page.reload()
    page.locator("#agree").click()  # the consent text again, then where the person was
    start = page.locator("#start:enabled")
    start.wait_for()
    assert start.inner_text() == "Continue with image 11"
    start.click()
    assert page.locator("#current").inner_text() == "11"
    assert page.locator("#progress").evaluate("p => p.value") == 10
    page.keyboard.press("Backspace")  # the 10th answer is there, as given before the reload
    assert page.locator("#choices button.chosen").inner_text() == typed[9]
    page.keyboard.press(typed[9])
    page.keyboard.press("5")
    page.keyboard.press("8")
    page.locator("#review").wait_for(state="visible")
    page.keyboard.press("Enter")
    page.locator("#debrief-continue").click()
    page.locator("#done").wait_for(state="visible")
    problems.assert_clean()
    page.close()
    session = session_for(sqlite_database_url)
    try:
        stored = session.execute(
            select(Label.position, Label.label, Label.response_ms).order_by(Label.position)
        ).all()
        assert [(p, label) for p, label, _ in stored] == list(
            enumerate([int(k) for k in typed + "58"])
        )
        # the first ten, label and response time, exactly as saved before the reload
        assert [tuple(row) for row in stored[:9]] == before[:9]
        assert stored[9][:2] == before[9][:2]  # answered again after Back: same label
        assert session.scalar(select(func.count()).select_from(LabelDraft)) == 0
        assert session.scalar(select(Allocation.status)) == AllocationStatus.submitted
    finally:
        session.close()


def framed_hit(
    fake_mturk: FakeMTurk, server_url: str, slug: str, assignment: str, hit: str, worker: str
) -> str:
    """The stand-in MTurk page framing the HIT page with MTurk's parameters."""
    page = f"{server_url}/hit/{slug}?" + urllib.parse.urlencode(
        {
            "assignmentId": assignment,
            "hitId": hit,
            "workerId": worker,
            "turkSubmitTo": fake_mturk.origin,
        }
    )
    return f"{fake_mturk.origin}/frame?src={urllib.parse.quote(page, safe='')}"


def _tab_to(page, element_id: str) -> None:
    """Press Tab until the element has the focus, as a keyboard user does."""
    for _ in range(20):
        if page.evaluate("() => document.activeElement && document.activeElement.id") == element_id:
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached #{element_id}")


def _allocations(url: str) -> list[tuple]:
    session = session_for(url)
    try:
        return [
            tuple(row)
            for row in session.execute(
                select(
                    Allocation.consent_sha256,
                    Allocation.consented_at,
                    Allocation.debrief_text_id,
                    Allocation.debriefed_at,
                )
            )
        ]
    finally:
        session.close()


def test_declining_ends_politely_and_stores_only_the_refusal(
    browser, sqlite_database_url, study_in, fake_mturk, live_server_factory
):
    url = sqlite_database_url
    study = study_in(url)
    settings = make_settings(
        url, frame_ancestors=[fake_mturk.origin], turk_submit_hosts=[fake_mturk.origin]
    )
    server = live_server_factory(settings)
    page = browser.new_page()
    problems = watch(page)
    page.goto(framed_hit(fake_mturk, server.url, study.slug, "ASSIGN-NO", "HIT0", "WORKER-NO"))
    frame = page.frame_locator("#hit")
    frame.locator("#decline").click()
    frame.locator("#declined").wait_for(state="visible")
    assert "return this HIT" in frame.locator("#declined-text").inner_text()
    assert frame.locator("#stimulus").get_attribute("src") is None  # no image was ever asked for
    problems.assert_clean()
    page.close()
    assert fake_mturk.submissions == []
    session = session_for(url)
    try:
        assert session.scalar(select(func.count()).select_from(Allocation)) == 0
        assert session.scalar(select(func.count()).select_from(Worker)) == 0
        (declined,) = session.scalars(select(Event).where(Event.kind == "consent_declined"))
        assert declined.worker_external_id is None and declined.detail["source"] == "mturk"
        assert declined.detail["was_current"] is True
    finally:
        session.close()


def test_the_preview_shows_the_consent_text_before_the_hit_is_accepted(
    browser, sqlite_database_url, study_in, fake_mturk, live_server_factory
):
    url = sqlite_database_url
    study = study_in(url)
    server = live_server_factory(make_settings(url, frame_ancestors=[fake_mturk.origin]))
    preview = f"{server.url}/hit/{study.slug}?assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE&hitId=HIT0"
    page = browser.new_page()
    problems = watch(page)
    page.goto(f"{fake_mturk.origin}/frame?src={urllib.parse.quote(preview, safe='')}")
    frame = page.frame_locator("#hit")
    text = frame.locator("#consent-text")
    text.wait_for(state="visible")
    assert "Consent to take part" in text.inner_text() and "[EDIT:" in text.inner_text()
    assert "Accept the HIT to begin" in frame.locator("main").inner_text()
    problems.assert_clean()
    page.close()
    session = session_for(url)
    try:
        assert session.scalar(select(func.count()).select_from(Allocation)) == 0
    finally:
        session.close()


def test_agreeing_to_a_consent_text_replaced_meanwhile_is_refused_and_says_to_reload(
    browser, sqlite_database_url, study_in, live_server_factory, tmp_path
):
    url = sqlite_database_url
    study = study_in(url)
    (code,) = invite(url, study.slug)
    server = live_server_factory(make_settings(url))
    page = browser.new_page()
    problems = watch(page, r"HTTP 409: POST .*/accept", r"status of 409")
    page.goto(f"{server.url}/lab/{study.slug}?code={code}")
    page.locator("#consent-text").wait_for(state="visible")
    new_text = tmp_path / "consent.md"
    new_text.write_text("# Consent, version 2\n\nThe lab's own words.\n", encoding="utf-8")
    attach_texts(url, study.slug, consent=new_text)
    page.locator("#agree").click()
    error = page.locator("#error")
    error.wait_for(state="visible")
    assert "reload the page" in error.inner_text()
    page.reload()  # the refusal made the server drop the old text at once
    assert "version 2" in page.locator("#consent-text").inner_text()
    page.locator("#agree").click()
    page.locator("#start:enabled").wait_for()
    problems.assert_clean()
    page.close()


def _drafts(url: str) -> tuple[int, list[tuple[int, int, int]]]:
    session = session_for(url)
    try:
        rows = session.execute(
            select(LabelDraft.position, LabelDraft.label, LabelDraft.response_ms).order_by(
                LabelDraft.position
            )
        ).all()
        return len(rows), [tuple(row) for row in rows]
    finally:
        session.close()


def test_a_site_not_in_frame_ancestors_cannot_frame_the_page(
    browser, sqlite_database_url, live_server_factory, small_bundle, fake_mturk
):
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
    problems = watch(page, "frame-ancestors", r"chrome-error://", "ERR_BLOCKED_BY_RESPONSE")
    page.goto(
        f"{fake_mturk.origin}/frame?src="
        + urllib.parse.quote(f"{server.url}/lab/{study.slug}", safe="")
    )
    page.wait_for_timeout(1000)
    framed = page.frames[1]
    assert framed.url != f"{server.url}/lab/{study.slug}" or framed.locator("#code").count() == 0
    assert refused, "Chromium should report the frame-ancestors refusal"
    problems.assert_clean()  # and nothing else went wrong
    page.close()


def _label_count(url: str) -> int:
    session = session_for(url)
    try:
        return session.scalar(select(func.count()).select_from(Label))
    finally:
        session.close()
