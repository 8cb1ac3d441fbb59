"""A bundle made from a trained model imports into the real study server (SQLite)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from sqlalchemy import select

from contract.bundle import read_bundle
from study_server.db.models import Stimulus, Study
from testkit.databases import session_for
from testkit.studies import import_study


def test_the_study_server_imports_a_generated_bundle(
    sqlite_database_url: str, stimulus_bundle: Path
) -> None:
    bundle = read_bundle(stimulus_bundle)
    result = import_study(sqlite_database_url, stimulus_bundle, items_per_assignment=25)
    session = session_for(sqlite_database_url)
    try:
        study = session.scalars(select(Study).where(Study.slug == result.slug)).one()
        assert (study.defense, study.network, study.checkpoint_sha256) == (
            "reference",
            "fc",
            bundle.meta.checkpoint_sha256,
        )
        assert study.attack["max_iterations"] == 150
        stored = {s.stimulus_key: s for s in session.scalars(select(Stimulus)).all()}
    finally:
        session.close()
    assert set(stored) == {r.stimulus_id for r in bundle.records}
    for record in bundle.records:
        row = stored[record.stimulus_id]
        assert hashlib.sha256(row.image_png).hexdigest() == record.image_sha256
        assert (row.kind.value, row.target, row.prediction_adversarial, row.success) == (
            record.kind,
            record.target,
            record.prediction_adversarial,
            record.success,
        )
