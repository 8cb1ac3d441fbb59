"""`prolific publish` makes one Prolific study per study whatever crashes or lost answers come
between creating and recording it, spends nothing it did not show and have confirmed, and
refuses settings that would harm participants or the budget."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from contract.cli import UsageError
from markets.prolific import errors
from markets.prolific import publish as publishing
from markets.prolific.publish import (
    AlreadyPublished,
    CostMismatch,
    PublishDeclined,
    publish,
)
from study_server.db.access import study_sessions
from study_server.db.models import ProlificStudy, ProlificSubmission, Study
from study_server.db.store import utc_now
from testkit.databases import session_for
from testkit.studies import attach_lab_texts, import_study, make_experiment
from tests.fixtures.prolific import make_client, participant, register_prolific_study, settings_on

URL = "https://study.example.org"


def _publish(database_url, fake, *, confirm=lambda plan: True, settings=None, url=URL, **kw):
    settings = settings or settings_on(fake)
    recording = make_client(settings)
    with study_sessions(database_url) as sessions:
        return publish(
            sessions=sessions,
            client=recording.client,
            settings=settings,
            study_slug=kw.get("slug", "ours-fc"),
            public_url=url,
            allocation_timeout_s=kw.get("timeout", 20 * 60),
            confirm=confirm,
            allow_unedited_texts=kw.get("allow_unedited_texts", True),
        )


def _rows(database_url) -> list[ProlificStudy]:
    session = session_for(database_url)
    try:
        return list(session.scalars(select(ProlificStudy)))
    finally:
        session.close()


def _study_row(database_url, slug: str = "ours-fc") -> Study:
    session = session_for(database_url)
    try:
        return session.scalars(select(Study).where(Study.slug == slug)).one()
    finally:
        session.close()


def _crash_once(monkeypatch, name: str) -> None:
    original = getattr(publishing, name)
    calls = []

    def crash(*args, **kwargs):
        if not calls:
            calls.append(1)
            raise KeyboardInterrupt("the process died here")
        return original(*args, **kwargs)

    monkeypatch.setattr(publishing, name, crash)


def test_a_crash_after_create_finds_the_study_by_its_internal_name(
    database_url, study, fake_prolific, monkeypatch
):
    _crash_once(monkeypatch, "_record")
    with pytest.raises(KeyboardInterrupt):
        _publish(database_url, fake_prolific)
    assert _rows(database_url) == [] and len(fake_prolific.fake.list_studies()) == 1
    result = _publish(database_url, fake_prolific)
    assert result.recovered and result.published_now and not result.created
    (study_on_prolific,) = fake_prolific.fake.list_studies()
    assert study_on_prolific["status"] == "ACTIVE"
    assert fake_prolific.fake.calls_of("create_study") == 1
    (row,) = _rows(database_url)
    assert row.prolific_study_id == study_on_prolific["id"] and row.published_at is not None
    assert row.completion_code == study_on_prolific["completion_codes"][0]["code"]
    manifest = _study_row(database_url).manifest_sha256
    assert row.internal_name == f"advcritic ours-fc {manifest[:16]}"


def test_a_create_whose_answer_was_lost_is_adopted_not_repeated(database_url, study, fake_prolific):
    fake_prolific.fake.lose_answer_of("create_study")
    result = _publish(database_url, fake_prolific)
    assert result.recovered and result.status == "ACTIVE"
    assert len(fake_prolific.fake.list_studies()) == 1
    assert fake_prolific.fake.calls_of("create_study") == 1


def test_a_publish_whose_answer_was_lost_is_charged_once(database_url, study, fake_prolific):
    fake_prolific.fake.lose_answer_of("transition_study")
    before = fake_prolific.fake.balance(fake_prolific.workspace_id)["available_balance"]
    result = _publish(database_url, fake_prolific)
    assert result.status == "ACTIVE" and fake_prolific.fake.calls_of("transition_study") == 2
    after = fake_prolific.fake.balance(fake_prolific.workspace_id)["available_balance"]
    assert before - after == 400  # 3 places x £1.00 + £1.00 fee (33.3% of £3.00)


def test_a_crash_after_publish_records_it_without_asking_to_pay_again(
    database_url, study, fake_prolific, monkeypatch
):
    _crash_once(monkeypatch, "_mark_published")
    with pytest.raises(KeyboardInterrupt):
        _publish(database_url, fake_prolific)
    asked = []
    result = _publish(database_url, fake_prolific, confirm=lambda plan: asked.append(plan))
    assert asked == [] and not result.published_now and result.status == "ACTIVE"
    assert fake_prolific.fake.calls_of("transition_study") == 1
    with pytest.raises(AlreadyPublished, match="already published on Prolific"):
        _publish(database_url, fake_prolific)


def test_the_cost_is_prolifics_quote_and_a_wrong_fee_setting_is_refused(
    database_url, study, fake_prolific
):
    plans = []
    _publish(database_url, fake_prolific, confirm=lambda plan: plans.append(plan) or True)
    (plan,) = plans
    assert (plan.places, plan.rewards, plan.fee, plan.total) == (
        3,
        Decimal("3.00"),
        Decimal("1.00"),
        Decimal("4.00"),
    )
    assert "Prolific's quote agrees" in plan.describe()


def test_nothing_is_created_when_the_fee_is_wrong_funds_short_or_cost_declined(
    database_url, study, fake_prolific
):
    fake = fake_prolific.fake
    fake.fee_fraction = Decimal("0.428")
    with pytest.raises(CostMismatch, match="SERVICE_FEE_FRACTION=0.333"):
        _publish(database_url, fake_prolific)
    fake.fee_fraction = Decimal("0.333")
    fake.set_balance("3.99")
    with pytest.raises(errors.InsufficientFunds, match="balance is £3.99, publishing costs £4.00"):
        _publish(database_url, fake_prolific)
    fake.set_balance("100.00")
    with pytest.raises(PublishDeclined, match="nothing published"):
        _publish(database_url, fake_prolific, confirm=lambda plan: False)
    assert fake.calls_of("create_study") == 0 and fake.list_studies() == []
    assert fake.list_groups(None) == [] and _rows(database_url) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"workspace_id": None}, "ADVCRITIC_PROLIFIC_WORKSPACE_ID"),
        ({"maximum_allowed_minutes": 45}, "must not exceed the server's allocation timeout"),
        ({"estimated_minutes": 15, "maximum_allowed_minutes": 10}, "at least"),
    ],
)
def test_settings_that_would_harm_participants_are_refused(
    database_url, study, fake_prolific, change, message
):
    with pytest.raises(UsageError, match=message):
        _publish(database_url, fake_prolific, settings=settings_on(fake_prolific, **change))
    assert fake_prolific.fake.calls == []


def test_the_study_page_must_be_https_except_on_loopback(database_url, study, fake_prolific):
    with pytest.raises(UsageError, match="plain http"):
        _publish(database_url, fake_prolific, url="http://study.example.org")
    result = _publish(database_url, fake_prolific, url="http://127.0.0.1:8000")
    assert result.page_url.startswith("http://127.0.0.1:8000/prolific/ours-fc?PROLIFIC_PID=")


def test_a_study_whose_texts_hold_placeholders_is_refused(database_url, study, fake_prolific):
    """Prolific has no sandbox: the lab's own texts, or an explicit override."""
    with pytest.raises(publishing.UneditedTexts, match="consent version 1 .*11 \\[EDIT"):
        _publish(database_url, fake_prolific, allow_unedited_texts=False)
    assert _rows(database_url) == [] and fake_prolific.fake.list_studies() == []
    attach_lab_texts(database_url, study.slug)
    assert _publish(database_url, fake_prolific, allow_unedited_texts=False).created


def test_participants_of_sibling_studies_are_excluded_through_prolifics_filters(
    database_url, study, make_bundle, fake_prolific
):
    """Studies of one experiment: the sibling's Prolific study is blocklisted, its
    participants are put in the experiment's exclusion group, which this study blocklists."""
    fake = fake_prolific.fake
    sibling = import_study(database_url, make_bundle(n_adversarial=5, seed=7), slug="mm-fc")
    # The sibling ran on Prolific before; someone took part in it.
    other = fake.create_study(
        {
            **publishing.study_spec(
                settings_on(fake_prolific),
                _study_row(database_url, "mm-fc"),
                places=1,
                page_url=URL + "?{{%PROLIFIC_PID%}}",
                code="OTHER",
                group_id=None,
                blocked_studies=[],
            ).model_dump(exclude_none=True),
            "internal_name": "another",
        }
    )
    fake.transition_study(other["id"], {"action": "PUBLISH"})
    fake.start(other["id"], participant(7))
    register_prolific_study(database_url, sibling.slug, prolific_study_id=other["id"])
    session = session_for(database_url)
    try:
        (submission,) = fake.list_submissions(other["id"])
        session.add(
            ProlificSubmission(
                prolific_study_id=other["id"],
                submission_id=submission["id"],
                participant_id=participant(7),
                status="APPROVED",
                synced_at=utc_now(),
            )
        )
        session.commit()
    finally:
        session.close()
    make_experiment(database_url, "mnist-2018", [sibling.slug, study.slug])
    result = _publish(database_url, fake_prolific)
    filters = {
        f["filter_id"]: f["selected_values"]
        for f in fake.study(result.prolific_study_id)["filters"]
    }
    assert filters == {
        "participant_group_blocklist": [result.group_id],
        "previous_studies_blocklist": [other["id"]],
    }
    assert fake.group_members(result.group_id) == {participant(7)}
    (group,) = [g for g in fake.list_groups(None) if g["id"] == result.group_id]
    assert group["name"].startswith("advcritic experiment mnist-2018 ")
    with pytest.raises(Exception, match="not eligible"):
        fake.start(result.prolific_study_id, participant(7))
