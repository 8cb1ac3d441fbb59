"""A Prolific participant's view in Debian's Chromium (headless, via Playwright): they take the
study on the fake Prolific, land on the study page with PROLIFIC_PID, STUDY_ID and SESSION_ID,
label by keyboard, and once the server has stored the labels the page takes them to
Prolific's completion URL with the code, where their submission becomes AWAITING REVIEW."""

from __future__ import annotations

import urllib.parse

import pytest
from sqlalchemy import select

from markets.prolific.cli import main as prolific
from study_server.db.models import Label, ProlificStudy
from testkit.databases import session_for
from testkit.studies import attach_lab_texts, import_study
from tests.fixtures.prolific import participant, prolific_cli_settings, prolific_server_settings
from tests.server.test_browser import browser  # noqa: F401 (the module-scoped Chromium)

pytestmark = pytest.mark.browser


def test_a_participant_labels_and_is_sent_back_to_prolific_with_the_code(
    browser,  # noqa: F811
    sqlite_database_url,
    small_bundle,
    fake_prolific,
    live_server_factory,
    tmp_path,
):
    url = sqlite_database_url
    import_study(url, small_bundle, items_per_assignment=5)
    attach_lab_texts(url, "ours-fc")
    server = live_server_factory(prolific_server_settings(url, fake_prolific))
    argv = ["publish", "--study", "ours-fc", "--url", server.url, "--confirm-cost", "4.00"]
    assert prolific(argv, prolific_cli_settings(url, fake_prolific)) == 0
    session = session_for(url)
    try:
        published = session.scalars(select(ProlificStudy)).one()
    finally:
        session.close()
    page = browser.new_page()
    query = urllib.parse.urlencode(
        {"study": published.prolific_study_id, "participant": participant(5)}
    )
    page.goto(f"{fake_prolific.url}/_participant/take?{query}")
    assert page.url.startswith(f"{server.url}/prolific/ours-fc?PROLIFIC_PID={participant(5)}")
    page.locator("#agree").click()
    page.locator("#start:enabled").wait_for()
    page.keyboard.press("Enter")
    for key in "31415":
        page.keyboard.press(key)
    page.locator("#review").wait_for(state="visible")
    page.keyboard.press("Enter")
    page.locator("#debrief-text").wait_for(state="visible")  # before the code, the debrief
    assert "The images were changed" in page.locator("#debrief-text").inner_text()  # the lab's
    assert published.completion_code not in page.content()
    assert fake_prolific.fake.list_submissions(published.prolific_study_id)[0]["status"] == (
        "ACTIVE"
    )
    page.locator("#debrief-continue").click()
    page.wait_for_url(f"{fake_prolific.completion_url}?cc={published.completion_code}")
    assert "awaiting review" in page.content()
    page.screenshot(path=str(tmp_path / "completed.png"))
    page.close()
    (submission,) = fake_prolific.fake.list_submissions(published.prolific_study_id)
    assert (submission["participant_id"], submission["status"], submission["study_code"]) == (
        participant(5),
        "AWAITING REVIEW",
        published.completion_code,
    )
    session = session_for(url)
    try:
        labels = [tuple(r) for r in session.execute(select(Label.position, Label.label))]
    finally:
        session.close()
    assert sorted(labels) == [(0, 3), (1, 1), (2, 4), (3, 1), (4, 5)]
