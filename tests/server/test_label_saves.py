"""Saving a label as it is given: one statement in the common case, the detailed path for
everything it refuses, the same rules on both backends."""

from __future__ import annotations

from sqlalchemy import event, select

from study_server.db.models import LabelDraft
from testkit.databases import session_for
from tests.server.flow import mturk_accept, save_label


def _drafts(url: str) -> dict[int, tuple[int, int | None]]:
    session = session_for(url)
    try:
        rows = session.scalars(select(LabelDraft))
        return {row.position: (row.label, row.response_ms) for row in rows}
    finally:
        session.close()


def test_a_label_is_kept_and_replaced_and_every_rule_still_refuses(live_server, database_url):
    with live_server.client() as web:
        accepted = mturk_accept(web, "ours-fc", worker="AW1", assignment="A1").json()
        me = {"worker": "AW1", "mturk_assignment": "A1"}
        assert save_label(web, accepted, 0, 3, **me).status_code == 200
        assert save_label(web, accepted, 0, 4, **me, response_ms=1234).status_code == 200
        assert _drafts(database_url) == {0: (4, 1234)}  # replaced, not duplicated
        refused = {
            "position outside the assignment": save_label(web, accepted, 99, 1, **me),
            "label outside the classes": save_label(web, accepted, 1, 10, **me),
            "someone else": save_label(web, accepted, 1, 1, worker="AW2", mturk_assignment="A1"),
            "another MTurk assignment": save_label(
                web, accepted, 1, 1, worker="AW1", mturk_assignment="A9"
            ),
        }
    statuses = {why: (r.status_code, r.json()["detail"]) for why, r in refused.items()}
    assert statuses["position outside the assignment"][0] == 422
    assert statuses["label outside the classes"] == (
        422,
        "label 10 is outside the classes 0..9",
    )
    assert statuses["someone else"][0] == 403
    assert "does not match" in statuses["another MTurk assignment"][1]
    assert _drafts(database_url) == {0: (4, 1234)}


def test_a_valid_label_is_one_statement_and_a_refused_one_explains_itself(live_server, monkeypatch):
    """The page sends a label per image, the server's most frequent write: in the common
    case one statement (an upsert whose SELECT carries the rules), awaited on the event loop
    on PostgreSQL and on a pooled connection on SQLite; the rule-by-rule path runs only for
    a label it refuses, to say why."""
    state = live_server.server.config.app.state
    engine, loop_db = state.engine, state.loop_db
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if not statement.lstrip().upper().startswith(("BEGIN", "PRAGMA")):
            statements.append(statement)

    if loop_db is not None:  # PostgreSQL: the statements the loop's connections run
        run_on_loop = loop_db.rows

        async def rows(statement, values, **options):
            statements.append(loop_db.renderings(statement).sql)
            return await run_on_loop(statement, values, **options)

        monkeypatch.setattr(loop_db, "rows", rows)
    with live_server.client() as web:
        accepted = mturk_accept(web, "ours-fc", worker="AW1", assignment="A1").json()
        me = {"worker": "AW1", "mturk_assignment": "A1"}
        event.listen(engine, "before_cursor_execute", record)
        try:
            assert save_label(web, accepted, 2, 7, **me).status_code == 200
            assert len(statements) == 1 and "label_drafts" in statements[0]
            statements.clear()
            assert save_label(web, accepted, 2, 70, **me).status_code == 422
            assert len(statements) > 1  # the detailed path ran to find the reason
        finally:
            event.remove(engine, "before_cursor_execute", record)
    assert _drafts(live_server.settings.database_url) == {2: (7, 700)}
