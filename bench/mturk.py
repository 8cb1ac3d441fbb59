"""What idempotent publishing and syncing cost over bare boto3 calls, for a 400-HIT study.

    python bench/mturk.py [--hits 400] [--database-url URL]

Against the loopback fake of MTurk (mturk.fake), in one run:

- `mturk publish` of a study with N assignments (one HIT each: a listing of existing HITs,
  N CreateHITWithHITType calls, one database commit per HIT) versus N bare boto3
  create_hit_with_hit_type calls on the same fake, with nothing stored;
- `mturk sync` once every HIT has a submitted assignment (a listing, N ListAssignmentsForHIT
  calls, the verification of N allocations, N qualification grants) versus the same N
  bare list_assignments_for_hit calls.

It prints seconds and the ratio to the bare calls: what the database bookkeeping adds.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from markets.mturk.client import MTurkClient
from markets.mturk.fake import FakeMTurk, serve_fake_mturk
from markets.mturk.publish import publish
from markets.mturk.question import external_question_xml
from markets.mturk.sync import sync
from study_server.db.access import study_sessions
from study_server.db.migrate import upgrade
from study_server.db.models import (
    Allocation,
    AllocationStatus,
    Assignment,
    MTurkHit,
    Worker,
    WorkerSource,
)
from study_server.db.session import create_db_engine, create_session_factory
from study_server.importer import import_bundle
from study_server.settings import MTurkSettings
from study_server.synthetic import write_synthetic_bundle

PAGE = "https://study.example.org/hit/ours-fc"


def _study(url: str, hits: int, workdir: Path) -> None:
    upgrade(url)
    bundle = write_synthetic_bundle(workdir / "bundle", n_adversarial=hits)
    engine = create_db_engine(url)
    with create_session_factory(engine)() as session:
        import_bundle(
            session=session,
            bundle_path=bundle,
            slug="ours-fc",
            items_per_assignment=1,
            split_seed=0,
        )
    engine.dispose()


def _workers_submit(fake: FakeMTurk, url: str) -> None:
    """Every HIT worked on and submitted, on MTurk and on the server (as the HIT page would)."""
    engine = create_db_engine(url)
    now = datetime.now(UTC)
    with create_session_factory(engine)() as session:
        hits = session.query(MTurkHit).order_by(MTurkHit.slot).all()
        assignments = session.query(Assignment).order_by(Assignment.ordinal).all()
        for n, (hit, assignment) in enumerate(zip(hits, assignments, strict=True)):
            worker_id = f"AWORKER{n:05d}"
            assignment_id, _ = fake.accept(hit.hit_id, worker_id)
            fake.external_submit({"assignmentId": [assignment_id], "labels": ["1"]})
            worker = Worker(source=WorkerSource.mturk, external_id=worker_id)
            session.add(worker)
            session.flush()
            session.add(
                Allocation(
                    study_id=assignment.study_id,
                    assignment_id=assignment.id,
                    worker_id=worker.id,
                    status=AllocationStatus.submitted,
                    mturk_assignment_id=assignment_id,
                    hit_id=hit.hit_id,
                    allocated_at=now,
                    expires_at=now + timedelta(hours=1),
                    submitted_at=now,
                )
            )
        session.commit()
    engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hits", type=int, default=400)
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-mturk-"))
    url = args.database_url or f"sqlite:///{workdir}/bench.db"
    _study(url, args.hits, workdir)
    fake = FakeMTurk(balance="1000000.00")
    with serve_fake_mturk(fake) as server:
        access_key, secret = next(iter(fake.credentials.items()))
        os.environ.update(
            AWS_ACCESS_KEY_ID=access_key,
            AWS_SECRET_ACCESS_KEY=secret,
            AWS_EC2_METADATA_DISABLED="true",
        )
        settings = MTurkSettings(endpoint_url=server.url)
        client = MTurkClient(settings)
        boto = client._boto
        type_id = boto.create_hit_type(
            Title="bench", Description="bench", Reward="0.50", AssignmentDurationInSeconds=600
        )["HITTypeId"]
        question = external_question_xml(PAGE, 800)
        started = time.perf_counter()
        bare_ids = [
            boto.create_hit_with_hit_type(
                HITTypeId=type_id,
                LifetimeInSeconds=3600,
                Question=question,
                UniqueRequestToken=f"bare-{n}",
            )["HIT"]["HITId"]
            for n in range(args.hits)
        ]
        bare_create = time.perf_counter() - started
        with study_sessions(url) as sessions:
            started = time.perf_counter()
            result = publish(
                sessions=sessions,
                client=client,
                settings=settings,
                study_slug="ours-fc",
                page_url=PAGE,
            )
            published = time.perf_counter() - started
            assert len(result.created) == args.hits
            _workers_submit(fake, url)
            started = time.perf_counter()
            for hit_id in bare_ids:
                boto.list_assignments_for_hit(HITId=hit_id)
            bare_list = time.perf_counter() - started
            started = time.perf_counter()
            report = sync(sessions=sessions, client=client, study_slug="ours-fc")
            synced = time.perf_counter() - started
            assert report.confirmed == args.hits and not report.flagged
    backend = url.split(":", 1)[0]
    print(
        f"mturk publish, {args.hits} HITs ({backend}): {published:.2f} s vs "
        f"{bare_create:.2f} s of bare "
        f"create_hit_with_hit_type calls = {published / bare_create:.2f}x"
    )
    print(
        f"mturk sync, {args.hits} submitted HITs ({backend}): {synced:.2f} s vs "
        f"{bare_list:.2f} s of bare "
        f"list_assignments_for_hit calls = {synced / bare_list:.2f}x "
        f"(sync also grants {report.granted} qualifications)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
