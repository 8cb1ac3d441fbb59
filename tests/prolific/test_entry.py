"""The study page and API with Prolific's URL parameters: a wrong or missing parameter is a 4xx
with its reason, a participant is bound to their session, the code only follows stored labels,
and a refused request stores nothing but its line in the audit of events."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from study_server.db.models import Allocation, Event, ProlificSession
from testkit.databases import session_for
from testkit.studies import import_study, make_experiment
from tests.fixtures.prolific import participant, prolific_accept, register_prolific_study

STUDY = "6650aaaaaaaaaaaaaaaaaaaa"
SESSION = "6650bbbbbbbbbbbbbbbbbb01"
CODE = "C0DE1234"


@pytest.fixture
def prolific_study(database_url, study):
    register_prolific_study(database_url, study.slug, prolific_study_id=STUDY, code=CODE)
    return study


def _ids(pid: int = 1, session: str = SESSION, study: str = STUDY) -> dict[str, str]:
    return {"participant_id": participant(pid), "study_id": study, "session_id": session}


def _page(web, slug: str, **params: str):
    query = "&".join(f"{key}={value}" for key, value in params.items())
    return web.get(f"/prolific/{slug}?{query}")


def _counts(url: str) -> tuple[int, int, int]:
    session = session_for(url)
    try:
        return (
            session.scalar(select(func.count()).select_from(Allocation)),
            session.scalar(select(func.count()).select_from(ProlificSession)),
            session.scalar(select(func.count()).select_from(Event).where(Event.kind == "refused")),
        )
    finally:
        session.close()


def _labels(accepted: dict) -> list[dict[str, int]]:
    return [{"position": p, "label": 1} for p in range(accepted["num_items"])]


@pytest.mark.parametrize(
    ("params", "status", "reason"),
    [
        ({"STUDY_ID": STUDY, "SESSION_ID": SESSION}, 422, "PROLIFIC_PID is missing"),
        (
            {"PROLIFIC_PID": "someone", "STUDY_ID": STUDY, "SESSION_ID": SESSION},
            422,
            "PROLIFIC_PID must be a Prolific id (24 hexadecimal characters), got &#39;someone&#39;",
        ),
        (
            {"PROLIFIC_PID": participant(1), "STUDY_ID": STUDY, "SESSION_ID": "{{%SESSION_ID%}}"},
            422,
            "SESSION_ID must be a Prolific id",
        ),
        (
            {"PROLIFIC_PID": participant(1), "STUDY_ID": "6650" + "0" * 20, "SESSION_ID": SESSION},
            404,
            "is not the Prolific study of &#39;ours-fc&#39;",
        ),
    ],
)
def test_a_wrong_or_missing_parameter_is_a_4xx_page_with_the_reason(
    live_server, prolific_study, params, status, reason
):
    with live_server.client() as web:
        page = _page(web, prolific_study.slug, **params)
    assert page.status_code == status and reason in page.text


def test_a_study_not_published_on_prolific_has_no_prolific_page(live_server, study):
    with live_server.client() as web:
        page = _page(
            web, study.slug, PROLIFIC_PID=participant(1), STUDY_ID=STUDY, SESSION_ID=SESSION
        )
    assert page.status_code == 404 and "not published on Prolific" in page.text


def test_the_page_carries_the_ids_but_never_the_code(live_server, prolific_study):
    with live_server.client() as web:
        page = _page(
            web,
            prolific_study.slug,
            PROLIFIC_PID=participant(1).upper(),
            STUDY_ID=STUDY,
            SESSION_ID=SESSION,
        )
    assert page.status_code == 200
    assert f'"participant_id": "{participant(1)}"' in page.text  # lower-cased
    assert "/api/prolific/ours-fc/accept" in page.text and CODE not in page.text


def test_a_participant_id_that_does_not_match_its_session_is_refused_and_nothing_stored(
    live_server, prolific_study, database_url
):
    with live_server.client() as web:
        first = prolific_accept(web, "ours-fc", _ids(1))
        assert first.status_code == 200 and first.json()["outcome"] == "allocated"
        before = _counts(database_url)
        other_session = prolific_accept(web, "ours-fc", _ids(1, session="6650bbbbbbbbbbbbbbbbbb02"))
        assert other_session.status_code == 403
        assert (
            "does not match SESSION_ID 6650bbbbbbbbbbbbbbbbbb02" in other_session.json()["detail"]
        )
        stolen_session = prolific_accept(web, "ours-fc", _ids(2))
        assert stolen_session.status_code == 403
        assert "belongs to another participant" in stolen_session.json()["detail"]
        # Taking over the labels of participant 1 with another session does not work either.
        submit = web.post(
            first.json()["submit_url"],
            json={
                **_ids(1, session="6650bbbbbbbbbbbbbbbbbb02"),
                "labels": _labels(first.json()),
            },
        )
        assert submit.status_code == 403
    allocations, bound, refused = _counts(database_url)
    assert (allocations, bound) == before[:2] and refused == before[2] + 3


def test_malformed_ids_in_the_api_are_422_naming_the_field(live_server, prolific_study):
    with live_server.client() as web:
        bad = prolific_accept(web, "ours-fc", {**_ids(1), "session_id": "x" * 24})
    assert bad.status_code == 422 and "session_id" in bad.text


def test_the_completion_url_only_after_stored_labels_and_again_on_reload(
    live_server, prolific_study
):
    with live_server.client() as web:
        accepted = prolific_accept(web, "ours-fc", _ids(1)).json()
        early = web.post("/api/prolific/ours-fc/complete", json=_ids(1))
        assert early.status_code == 403 and "no labels are stored" in early.json()["detail"]
        stranger = web.post(
            "/api/prolific/ours-fc/complete", json=_ids(2, session=SESSION[:-1] + "9")
        )
        assert stranger.status_code == 403 and "has no assignment here" in stranger.json()["detail"]
        again = prolific_accept(web, "ours-fc", _ids(1)).json()
        assert (again["outcome"], again["assignment"]) == ("resumed", accepted["assignment"])
        stored = web.post(accepted["submit_url"], json={**_ids(1), "labels": _labels(accepted)})
        assert (stored.json()["status"], stored.json()["labels"]) == (
            "stored",
            accepted["num_items"],
        )
        done = web.post("/api/prolific/ours-fc/complete", json=_ids(1))
        assert done.json() == {
            "completion_url": f"https://app.prolific.com/submissions/complete?cc={CODE}"
        }
        reload = prolific_accept(web, "ours-fc", _ids(1)).json()
        assert reload["outcome"] == "submitted" and reload["item_urls"] == []
        # Nobody gets a second assignment of the study, with this session or another.
        assert prolific_accept(web, "ours-fc", _ids(1)).json()["outcome"] == ("submitted")


def test_a_participant_of_a_sibling_study_is_refused_by_the_server(
    live_server, prolific_study, database_url, make_bundle
):
    """Studies of one experiment: a participant of one is refused by the others whatever
    Prolific's filters let through, before their session is bound."""
    other = import_study(database_url, make_bundle(n_adversarial=5, seed=3), slug="mm-fc")
    other_study = "6650cccccccccccccccccccc"
    register_prolific_study(database_url, other.slug, prolific_study_id=other_study)
    make_experiment(database_url, "mnist-2018", [other.slug, prolific_study.slug])
    with live_server.client() as web:
        took = prolific_accept(
            web, "mm-fc", _ids(1, session="6650bbbbbbbbbbbbbbbbbb07", study=other_study)
        )
        assert took.status_code == 200
        bound = _counts(database_url)
        refused = prolific_accept(web, "ours-fc", _ids(1))
        assert refused.status_code == 409
        assert "took part in another study of this experiment" in refused.json()["detail"]
        assert _counts(database_url)[:2] == bound[:2]  # no session bound, nothing allocated
        assert prolific_accept(web, "ours-fc", _ids(2, session=SESSION)).status_code == 200
