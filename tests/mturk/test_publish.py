"""`mturk publish`: one HIT per assignment, exactly once even across crashes; money first."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from markets.mturk import errors
from markets.mturk import publish as publish_module
from markets.mturk.exclusion import study_qualification_name
from markets.mturk.fake import WorkerProfile
from markets.mturk.publish import (
    PublishDeclined,
    annotation,
    publish,
    request_token,
)
from markets.mturk.records import PERCENT_APPROVED_QUALIFICATION
from study_server.db.access import study_sessions
from study_server.db.models import MTurkHit, Study
from testkit.databases import session_for
from testkit.studies import attach_lab_texts, import_study
from tests.fixtures.mturk import make_client

PAGE = "https://study.example.org/hit/ours-fc"


@pytest.fixture
def four_slot_study(database_url, make_bundle):
    """20 adversarial images in 4 assignments of 5: the study is 4 HITs."""
    return import_study(database_url, make_bundle(n_adversarial=20), items_per_assignment=5)


def _publish(database_url, client, settings, **kwargs):
    with study_sessions(database_url) as sessions:
        return publish(
            sessions=sessions,
            client=client,
            settings=settings,
            study_slug="ours-fc",
            page_url=PAGE,
            **kwargs,
        )


def _stored(database_url) -> list[MTurkHit]:
    session = session_for(database_url)
    try:
        return list(session.scalars(select(MTurkHit).order_by(MTurkHit.slot)))
    finally:
        session.close()


def test_one_hit_per_assignment_stored_with_its_token_and_a_rerun_publishes_nothing(
    database_url, four_slot_study, fake_mturk, mturk_client, mturk_settings
):
    client = mturk_client.client
    result = _publish(database_url, client, mturk_settings)
    assert len(result.created) == 4 and result.plan.total_cost == Decimal("2.40")
    rows = _stored(database_url)
    assert [r.slot for r in rows] == [0, 1, 2, 3] and all(r.sandbox for r in rows)
    assert sorted(r.hit_id for r in rows) == sorted(fake_mturk.fake.hit_ids())
    session = session_for(database_url)
    study = session.scalar(select(Study))
    session.close()
    on_mturk = {hit.hit_id: hit for hit in client.iter_hits()}
    for row in rows:
        assert row.unique_request_token == request_token(study, slot=row.slot, sandbox=True)
        assert on_mturk[row.hit_id].annotation == annotation(study, slot=row.slot, sandbox=True)
        assert len(row.unique_request_token) <= 64
    # Tokens come from the study's identity and the slot, never the clock: a new process agrees.
    assert request_token(study, slot=3, sandbox=True) == rows[3].unique_request_token
    assert request_token(study, slot=3, sandbox=False) != rows[3].unique_request_token
    hit = client.get_hit(rows[0].hit_id)
    assert (hit.max_assignments, hit.reward) == (1, Decimal("0.50"))
    again = _publish(database_url, client, mturk_settings)
    assert again.created == [] and again.plan.slots == ()
    assert fake_mturk.fake.calls_of("CreateHITWithHITType") == 4


def _crash_at_slot(monkeypatch, crash_slot: int) -> None:
    real_store = publish_module._store

    def store(sessions, study, slot, hit, sandbox, into):
        if slot == crash_slot:
            raise KeyboardInterrupt(
                "power cut after MTurk created the HIT, before the database knew"
            )
        real_store(sessions, study, slot, hit, sandbox, into)

    monkeypatch.setattr(publish_module, "_store", store)


@pytest.mark.parametrize("hours_later", [0, 25], ids=["same-day", "after-mturk-forgot-the-token"])
def test_a_rerun_after_a_crash_halfway_publishes_only_what_is_missing(
    database_url,
    four_slot_study,
    fake_mturk,
    mturk_client,
    mturk_settings,
    monkeypatch,
    hours_later,
):
    client = mturk_client.client
    with monkeypatch.context() as patch:
        _crash_at_slot(patch, 2)
        with pytest.raises(KeyboardInterrupt):
            _publish(database_url, client, mturk_settings)
    assert (
        len(_stored(database_url)) == 2 and len(fake_mturk.fake.hit_ids()) == 3
    )  # slot 2: on MTurk only
    fake_mturk.fake.advance(hours_later * 3600)
    result = _publish(database_url, client, mturk_settings)
    assert len(result.adopted) == 1 and len(result.created) == 1
    rows = _stored(database_url)
    assert [r.slot for r in rows] == [0, 1, 2, 3]
    assert sorted(r.hit_id for r in rows) == sorted(
        fake_mturk.fake.hit_ids()
    )  # no duplicate HIT anywhere
    assert fake_mturk.fake.calls_of("CreateHITWithHITType") == 4


def test_a_token_refusal_is_resolved_by_finding_the_hit_even_if_the_listing_lagged(
    database_url, four_slot_study, fake_mturk, mturk_client, mturk_settings, monkeypatch
):
    client = mturk_client.client
    with monkeypatch.context() as patch:
        _crash_at_slot(patch, 0)
        with pytest.raises(KeyboardInterrupt):
            _publish(database_url, client, mturk_settings)
    real_iter = type(client).iter_hits
    listings = iter([[], None, None, None, None])  # the first listing misses the new HIT

    def lagging(self):
        stale = next(listings, None)
        return iter(stale) if stale is not None else real_iter(self)

    monkeypatch.setattr(type(client), "iter_hits", lagging)
    result = _publish(database_url, client, mturk_settings)
    assert len(result.created) == 4  # slot 0 came back through HitAlreadyExists + a second listing
    assert len(fake_mturk.fake.hit_ids()) == 4 and len(_stored(database_url)) == 4


def test_a_pilot_with_max_hits_then_the_rest(
    database_url, four_slot_study, fake_mturk, mturk_client, mturk_settings
):
    assert len(_publish(database_url, mturk_client.client, mturk_settings, max_hits=1).created) == 1
    rest = _publish(database_url, mturk_client.client, mturk_settings)
    assert (len(rest.created), rest.plan.published) == (3, 1)


def test_not_enough_money_is_refused_before_any_hit_exists(
    database_url, four_slot_study, fake_mturk, mturk_client, mturk_settings
):
    fake_mturk.fake.set_balance("1.00")
    with pytest.raises(errors.InsufficientFunds, match=r"\$1\.00.*\$2\.40"):
        _publish(database_url, mturk_client.client, mturk_settings)
    assert fake_mturk.fake.hit_ids() == [] and _stored(database_url) == []


def _declined_live_publish(database_url, fake_mturk, mturk_settings):
    """A live publish of `ours-fc` whose cost confirmation is declined: the client and the
    plans shown."""
    attach_lab_texts(database_url, "ours-fc")
    live = make_client(fake_mturk, mturk_settings, sandbox=False).client
    shown = []
    with pytest.raises(PublishDeclined):
        _publish(
            database_url, live, mturk_settings, confirm=lambda plan: shown.append(plan) or False
        )
    return live, shown


def test_the_live_marketplace_needs_the_cost_confirmed_and_screens_workers(
    database_url, four_slot_study, fake_mturk, mturk_settings
):
    live, shown = _declined_live_publish(database_url, fake_mturk, mturk_settings)
    assert (
        fake_mturk.fake.hit_ids() == []
        and "LIVE" in shown[0].describe()
        and "$2.40" in shown[0].describe()
    )
    result = _publish(database_url, live, mturk_settings, confirm=lambda plan: True)
    hit = result.created[0]
    assert all(not row.sandbox for row in _stored(database_url))
    site = fake_mturk.fake
    site.register_worker("ANOVICE", WorkerProfile(approval_rate=80))
    with pytest.raises(Exception, match=PERCENT_APPROVED_QUALIFICATION):
        site.accept(hit, "ANOVICE")
    assert site.accept(hit, "AVETERAN")[0]


def test_workers_who_took_part_are_excluded_from_the_studys_other_hits(
    database_url, four_slot_study, fake_mturk, mturk_client, mturk_settings
):
    client = mturk_client.client
    hits = _publish(database_url, client, mturk_settings).created
    session = session_for(database_url)
    study = session.scalar(select(Study))
    session.close()
    fake_mturk.fake.accept(hits[0], "AWORKER1")
    qualification = client.find_qualification_type(study_qualification_name(study))
    client.grant_qualification(qualification, "AWORKER1")  # what `mturk sync` does for participants
    with pytest.raises(Exception, match="does not meet qualification"):
        fake_mturk.fake.accept(hits[1], "AWORKER1")
    assert fake_mturk.fake.accept(hits[1], "AWORKER2")[0]


def test_a_hold_longer_than_the_hits_assignment_duration_is_refused_at_publish(
    sqlite_database_url, make_bundle, aws_env, capsys
):
    """The server's hold must end before MTurk takes the HIT back from the worker."""
    from markets.mturk.cli import main as mturk
    from tests.fixtures.mturk import cli_settings

    url, fake = sqlite_database_url, aws_env
    import_study(url, make_bundle(n_adversarial=10), items_per_assignment=5)
    settings = cli_settings(url, fake, assignment_duration_s=600)
    too_long = settings.model_copy(update={"allocation_timeout_s": 900})
    assert mturk(["publish", "--study", "ours-fc"], too_long) == 2
    err = capsys.readouterr().err
    assert "ADVCRITIC_ALLOCATION_TIMEOUT_S (900 s)" in err and "(600 s)" in err
    assert fake.fake.handle("ListHITs", {})["NumResults"] == 0  # nothing published
    fitting = settings.model_copy(update={"allocation_timeout_s": 600})
    assert mturk(["publish", "--study", "ours-fc"], fitting) == 0
    session = session_for(url)
    try:  # each HIT keeps its duration: the server caps every hold of that HIT by it
        assert set(session.scalars(select(MTurkHit.assignment_duration_s))) == {600}
    finally:
        session.close()


def test_k_labels_per_image_publish_k_times_the_hits_and_the_cost_says_so(
    database_url, make_bundle, fake_mturk, mturk_settings
):
    """`--labels-per-image 3`: 3 replicas of 4 assignments are 12 HITs, each with
    MaxAssignments 1, and the live cost confirmation counts all 12."""
    import_study(
        database_url, make_bundle(n_adversarial=20), items_per_assignment=5, labels_per_image=3
    )
    live, shown = _declined_live_publish(database_url, fake_mturk, mturk_settings)
    assert shown[0].total_slots == 12 and "12 HIT(s) to publish" in shown[0].describe()
    assert "$7.20" in shown[0].describe()  # 12 x ($0.50 + $0.10 fee)
    result = _publish(database_url, live, mturk_settings, confirm=lambda plan: True)
    assert len(result.created) == 12
    assert {live.get_hit(hit_id).max_assignments for hit_id in result.created} == {1}
