"""Lab access by invitation: `study-server invite` mints single-use codes, stored hashed; the
lab page and the accept API refuse any other code, and a spent one, storing nothing."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from study_server.cli import main as study_server
from study_server.db.models import Allocation, Event, LabInvitation, Worker
from study_server.invitations import code_sha256, normalize
from testkit.databases import session_for
from testkit.servers import make_settings
from testkit.studies import invite
from tests.server.flow import consent_sha256, lab_accept, submit

LINK = re.compile(
    r"^http://127\.0\.0\.1:8000/lab/ours-fc\?code=([0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4})$"
)


def _counts(url: str) -> tuple[int, int]:
    session = session_for(url)
    try:
        return (
            session.scalar(select(func.count()).select_from(Allocation)),
            session.scalar(select(func.count()).select_from(Worker)),
        )
    finally:
        session.close()


def test_invite_prints_one_link_per_code_and_keeps_only_hashes(database_url, study, capsys):
    assert study_server(["invite", "ours-fc", "--n", "3", "--database-url", database_url]) == 0
    out, err = capsys.readouterr()
    codes = [LINK.match(line).group(1) for line in out.splitlines()]
    assert len(set(codes)) == 3 and "cannot be shown again" in err
    session = session_for(database_url)
    try:
        stored = set(session.scalars(select(LabInvitation.code_sha256)))
    finally:
        session.close()
    assert stored == {code_sha256(code) for code in codes}
    assert not any(code.replace("-", "") in digest.upper() for code in codes for digest in stored)
    assert normalize("k7qm 3xhd-9pra") == normalize("K7QM-3XHD-9PRA") == "K7QM3XHD9PRA"
    assert normalize("O1IL") == "0111"  # read as Crockford's base32 is


def test_invite_refuses_bad_input_naming_it(database_url, study, capsys):
    for argv, named in (
        (["invite", "ours-fc", "--n", "0"], "--n must be between 1 and 10000, got 0"),
        (["invite", "no-such", "--n", "2"], "no study 'no-such'"),
        (["invite", "ours-fc", "--note", "x" * 201], "--note must be 1 to 200 characters"),
    ):
        assert study_server([*argv, "--database-url", database_url]) == 2
        assert named in capsys.readouterr().err
    assert _counts(database_url) == (0, 0)


def test_unknown_and_spent_codes_are_refused_with_a_reason_and_nothing_stored(
    database_url, study, live_server
):
    (code,) = invite(database_url, study.slug)
    with live_server.client() as client:
        before = _counts(database_url)
        for bad in ("ABCD-EFGH-JKMN", "lab-007"):
            page = client.get(f"/lab/{study.slug}", params={"code": bad})
            api = lab_accept(client, study.slug, code=bad)
            assert page.status_code == 403 and "not valid" in page.text
            assert api.status_code == 403 and "not valid" in api.json()["detail"]
        typed = client.post(
            f"/api/studies/{study.slug}/accept",
            json={"worker_id": "lab-007", "consent_sha256": consent_sha256(client, study.slug)},
        )
        assert typed.status_code == 422 and "`code`" in typed.text  # no code a visitor makes up
        assert _counts(database_url) == before
        accepted = lab_accept(client, study.slug, code=code).json()
        again = lab_accept(client, study.slug, code=code.lower()).json()  # a reload resumes
        assert again["outcome"] == "resumed" and again["assignment"] == accepted["assignment"]
        assert submit(client, accepted, code=code, labels=[1, 2, 3, 4, 5]).status_code == 200
        spent_page = client.get(f"/lab/{study.slug}", params={"code": code})
        spent_api = lab_accept(client, study.slug, code=code)
    assert spent_page.status_code == 409 and "already been used" in spent_page.text
    assert spent_api.status_code == 409 and "already been used" in spent_api.json()["detail"]
    session = session_for(database_url)
    try:
        refused = session.scalars(select(Event.detail).where(Event.kind == "refused")).all()
    finally:
        session.close()
    assert {d["action"] for d in refused} >= {"lab_page", "accept"}


def test_the_lab_mode_off_refuses_even_a_real_code(database_url, study, live_server_factory):
    (code,) = invite(database_url, study.slug)
    server = live_server_factory(make_settings(database_url, local_mode=False))
    with server.client() as client:
        page = client.get(f"/lab/{study.slug}", params={"code": code})
        api = lab_accept(client, study.slug, code=code)
    assert page.status_code == 404 and api.status_code == 404
    assert "lab mode is off" in api.json()["detail"]
