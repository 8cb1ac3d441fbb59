"""`advcritic dry-run`: the whole human study rehearsed with simulated annotators, for nothing.

    bundle(s) ─► a fresh study database (migrate, import) ─► the live study server (uvicorn on
    a loopback port, with the dashboard) ─► publish on a market's loopback fake (MTurk or
    Prolific) ─► simulated people do the HITs / sessions through the server's real HTTP flow
    ─► sync, approve ─► Table 2 of the database beside the parameters the people were given

Every step is the code a real study runs (`study-server import`, `mturk publish|sync|approve`
or `prolific publish|sync|approve`, the labeling page's API, `analyze-study`); only the
market is the loopback fake (markets/*/fake) and the people are simulated
(analysis/dry_run.py: the model of analysis/simulate.py, one image at a time, recognising
each image the server shows them by its hash). Nothing reaches MTurk or Prolific and
nothing is paid. The database must hold no study: a dry run never touches a real one.

With `--serve` the server (and the fake) stay up afterwards so the dashboard can be looked
at (`/dashboard`, the admin token from ADVCRITIC_ADMIN_TOKEN or a random one printed).
"""

from __future__ import annotations

import argparse
import hashlib
import secrets
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import TYPE_CHECKING, Protocol

from contract.cli import EXIT_REFUSED, UsageError

if TYPE_CHECKING:
    import httpx
    from sqlalchemy.orm import Session, sessionmaker

    from analysis.dry_run import Recovery
    from analysis.simulate import Annotators, Arm
    from analysis.table2 import Table2
    from contract.bundle import StimulusRecord

MARKETS = ("mturk", "prolific")
Say = Callable[[str], None]


def register(subparsers: argparse._SubParsersAction) -> None:
    from analysis.clustered import RESAMPLES
    from analysis.planning_cli import add_annotator_options

    parser = subparsers.add_parser(
        "dry-run",
        help="rehearse the human study with simulated annotators: import, serve, publish on a "
        "market's loopback fake, label through the live server, sync, approve, analyze",
        description="Rehearse the whole human study with simulated annotators, for nothing: "
        "the bundles are imported into a fresh database, the real study server runs on a "
        "loopback port, the study is published on the loopback fake of MTurk or Prolific, "
        "simulated people label through the server's real HTTP flow, the market's sync and "
        "approve run, and Table 2 is printed beside the parameters the people were given.",
    )
    parser.add_argument(
        "--bundle",
        action="append",
        default=[],
        type=Path,
        metavar="DIR",
        help="a stimulus bundle, one study each (repeatable; one per defense and network)",
    )
    add_annotator_options(parser)
    options = parser.add_argument_group("the run")
    options.add_argument(
        "--market", choices=MARKETS, default="mturk", help="whose fake to publish on (mturk)"
    )
    options.add_argument(
        "--assignments",
        type=int,
        metavar="N",
        help="simulated people per study, one assignment each (default: every assignment)",
    )
    options.add_argument(
        "--items",
        type=int,
        default=25,
        metavar="N",
        help="images per assignment when importing (default 25, the paper's)",
    )
    options.add_argument(
        "--k",
        "--labels-per-image",
        dest="labels_per_image",
        type=int,
        default=1,
        metavar="K",
        help="labels per image, each from a different person (default 1, the paper's): the "
        "studies are imported with K replicas of their assignments",
    )
    options.add_argument(
        "--workdir",
        type=Path,
        help="keep the database here (dry-run.db) for `analyze-study` afterwards (default: a "
        "temporary folder, removed at the end)",
    )
    options.add_argument(
        "--database-url",
        help="a migrated or empty database holding no study (default: SQLite in --workdir)",
    )
    options.add_argument("--seed", type=int, default=0, help="seed of the simulated people (0)")
    options.add_argument(
        "--resamples",
        type=int,
        default=RESAMPLES,
        help="annotator-bootstrap resamples of the analysis (default %(default)s)",
    )
    options.add_argument(
        "--serve",
        action="store_true",
        help="keep the server (with its dashboard) and the fake running afterwards, until Ctrl-C",
    )
    options.add_argument(
        "--port", type=int, default=0, help="the server's port (default: a free one)"
    )
    parser.set_defaults(handler=run)


@dataclass(frozen=True)
class DryRunPlan:
    """What a dry run does: the studies, how their people answer, where, how many."""

    bundles: tuple[Path, ...]
    annotators: tuple[Annotators, ...]  # one per bundle
    market: str = "mturk"
    assignments: int | None = None  # simulated people per study (None: every assignment)
    items_per_assignment: int = 25
    labels_per_image: int = 1  # k: replicas of each study's assignments
    workdir: Path | None = None
    database_url: str | None = None
    seed: int = 0
    resamples: int = 1999
    admin_token: str | None = None  # None: a random one
    port: int = 0


@dataclass(frozen=True)
class DryRun:
    """A finished dry run, its servers still up inside `dry_run(...)`: more people can take
    part (`market.take_part`) and the market be synced again (`market.review`)."""

    database_url: str
    server_url: str
    admin_token: str
    slugs: tuple[str, ...]
    table: Table2
    recoveries: list[Recovery]
    market: Market
    sessions: sessionmaker[Session]


class Market(Protocol):
    """One market's loopback fake, as the dry run drives it."""

    name: str
    url: str

    def server_settings(self) -> dict[str, object]: ...

    def publish(self, sessions: sessionmaker[Session], slug: str, server_url: str) -> str: ...

    def person_id(self, study: int, person: int) -> str: ...

    def take_part(
        self, web: httpx.Client, slug: str, person: int, choose: Callable[[bytes], int]
    ) -> None: ...

    def review(self, sessions: sessionmaker[Session], slug: str) -> str: ...


class _MTurk:
    """The loopback fake of MTurk: HITs published with the real `mturk` code (boto3, SigV4)."""

    name = "MTurk"

    def __init__(self, stack: ExitStack, *, allocation_timeout_s: int) -> None:
        import boto3

        from markets.mturk.client import MTurkClient
        from markets.mturk.fake import FakeMTurk, serve_fake_mturk
        from study_server.settings import MTurkSettings

        fake = FakeMTurk()
        self.url = stack.enter_context(serve_fake_mturk(fake)).url
        ((key, secret),) = fake.credentials.items()
        self.settings = MTurkSettings(endpoint_url=self.url, max_retries=3)
        session = boto3.session.Session(
            aws_access_key_id=key, aws_secret_access_key=secret, region_name=fake.region
        )
        self.client = MTurkClient(self.settings, sandbox=True, session=session)
        self.allocation_timeout_s = allocation_timeout_s
        self.hits: dict[str, list[str]] = {}

    def server_settings(self) -> dict[str, object]:
        return {"turk_submit_hosts": [self.url]}

    def publish(self, sessions: sessionmaker[Session], slug: str, server_url: str) -> str:
        from sqlalchemy import select

        from markets.mturk.publish import publish
        from study_server.db.models import MTurkHit, Study

        result = publish(
            sessions=sessions,
            client=self.client,
            settings=self.settings,
            study_slug=slug,
            page_url=f"{server_url}/hit/{slug}",
            allocation_timeout_s=self.allocation_timeout_s,
        )
        with sessions() as session:
            self.hits[slug] = list(
                session.scalars(
                    select(MTurkHit.hit_id)
                    .join(Study, Study.id == MTurkHit.study_id)
                    .where(Study.slug == slug)
                    .order_by(MTurkHit.slot)
                )
            )
        return f"{len(result.created)} HIT(s) on the sandbox of the fake"

    def person_id(self, study: int, person: int) -> str:
        return f"ASIMULATED{study:02d}{person:05d}"  # MTurk's worker ids: A + upper case, digits

    def take_part(
        self, web: httpx.Client, slug: str, person: int, choose: Callable[[bytes], int]
    ) -> None:
        import httpx

        from markets.mturk.fake.hit_flow import do_hit

        study = list(self.hits).index(slug)
        with httpx.Client(base_url=self.url, timeout=30) as site:
            do_hit(
                site,
                web,
                hit_id=self.hits[slug][person],
                worker_id=self.person_id(study, person),
                choose=choose,
            )

    def review(self, sessions: sessionmaker[Session], slug: str) -> str:
        from markets.mturk.review import approve
        from markets.mturk.sync import sync

        synced = sync(sessions=sessions, client=self.client, study_slug=slug)
        approved = approve(sessions=sessions, client=self.client, study_slug=slug)
        return (
            f"{synced.confirmed} confirmed, {len(synced.flagged)} flagged; "
            f"{len(approved.done)} approved"
        )


class _Prolific:
    """The loopback fake of Prolific: one study published with the real `prolific` code."""

    name = "Prolific"

    def __init__(self, stack: ExitStack, *, allocation_timeout_s: int) -> None:
        from markets.prolific.client import ProlificClient
        from markets.prolific.fake import FakeProlific, create_app
        from study_server.loopback import serve_in_thread
        from study_server.settings import ProlificSettings

        fake = FakeProlific()
        served = serve_in_thread(create_app(fake))
        stack.callback(served.stop)
        self.url = served.url
        (token,) = fake.tokens
        self.settings = ProlificSettings(
            token=token,
            api_url=self.url,
            completion_url=f"{self.url}/submissions/complete",
            workspace_id=fake.workspace_id,
            max_retries=3,
        )
        self.client = stack.enter_context(ProlificClient(self.settings))
        self.allocation_timeout_s = allocation_timeout_s
        self.studies: dict[str, str] = {}

    def server_settings(self) -> dict[str, object]:
        from study_server.settings import ProlificSettings

        return {"prolific": ProlificSettings(completion_url=self.settings.completion_url)}

    def publish(self, sessions: sessionmaker[Session], slug: str, server_url: str) -> str:
        from markets.prolific.publish import publish

        result = publish(
            sessions=sessions,
            client=self.client,
            settings=self.settings,
            study_slug=slug,
            public_url=server_url,
            allocation_timeout_s=self.allocation_timeout_s,
            confirm=lambda plan: True,  # the fake's money: nobody is paid
            # Simulated people agree to whatever the texts say; a real study attaches its own.
            allow_unedited_texts=True,
        )
        if result.prolific_study_id is None:
            raise RuntimeError(f"the fake published no Prolific study for {slug}")
        self.studies[slug] = result.prolific_study_id
        return f"Prolific study {result.prolific_study_id} on the fake ({result.status})"

    def person_id(self, study: int, person: int) -> str:
        return f"5d{study:06x}{person:016x}"  # Prolific's ids: 24 hexadecimal characters

    def take_part(
        self, web: httpx.Client, slug: str, person: int, choose: Callable[[bytes], int]
    ) -> None:
        import httpx

        from markets.prolific.fake.participant import take_part

        participant = self.person_id(list(self.studies).index(slug), person)
        with httpx.Client(base_url=self.url, timeout=30) as site:
            take_part(
                site, web, study_id=self.studies[slug], participant_id=participant, choose=choose
            )

    def review(self, sessions: sessionmaker[Session], slug: str) -> str:
        from markets.prolific.review import approve
        from markets.prolific.sync import sync

        synced = sync(
            sessions=sessions, client=self.client, settings=self.settings, study_slug=slug
        )
        approved = approve(sessions=sessions, client=self.client, study_slug=slug)
        return (
            f"{synced.confirmed} confirmed, {len(synced.flagged)} flagged; "
            f"{len(approved.done)} approved"
        )


def _check(plan: DryRunPlan) -> None:
    if not plan.bundles:
        raise UsageError("give the studies: --bundle DIR (repeatable)")
    if len(plan.annotators) != len(plan.bundles):
        raise UsageError(
            f"{len(plan.annotators)} annotator model(s) for {len(plan.bundles)} bundle(s)"
        )
    if plan.market not in MARKETS:
        raise UsageError(f"--market must be one of {', '.join(MARKETS)}, got {plan.market!r}")
    for flag, value in (
        ("--assignments", plan.assignments),
        ("--items", plan.items_per_assignment),
        ("--k", plan.labels_per_image),
    ):
        if value is not None and value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value}")
    if plan.resamples < 99:
        raise UsageError(f"--resamples must be at least 99, got {plan.resamples}")
    if not 0 <= plan.port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, got {plan.port}")


def _arms(plan: DryRunPlan) -> list[Arm]:
    from analysis.simulate import Arm, StimulusSet

    arms = [
        Arm(StimulusSet.from_bundle(bundle), annotators)
        for bundle, annotators in zip(plan.bundles, plan.annotators, strict=True)
    ]
    titles = [arm.title for arm in arms]
    twice = sorted({title for title in titles if titles.count(title) > 1})
    if twice:
        raise UsageError(
            f"two bundles of {', '.join(twice)}: a dry run compares one study per defense and "
            "network (Table 2 would pool them into one row)"
        )
    return arms


def _fresh_database(url: str, *, given: bool) -> None:
    """Migrate `url` and refuse it if it holds a study: a dry run never touches a real one.
    `given`: the URL is the user's --database-url (else the run's file in --workdir)."""
    from sqlalchemy import func, select
    from sqlalchemy.exc import ArgumentError

    from study_server.db.access import describe_url, study_sessions
    from study_server.db.migrate import upgrade
    from study_server.db.models import Study

    try:
        upgrade(url)
    except ArgumentError as error:
        raise UsageError(f"--database-url {url!r} is not a database URL ({error})") from error
    with study_sessions(url) as sessions, sessions() as session:
        studies = session.scalar(select(func.count()).select_from(Study))
    if studies and given:
        raise UsageError(
            f"--database-url {describe_url(url)} already holds {studies} stud(ies): a dry run "
            "needs a database of its own (leave --database-url out for a fresh SQLite file)"
        )
    if studies:
        raise UsageError(
            f"{describe_url(url)} holds an earlier dry run: remove it or choose another --workdir"
        )


def _by_image(bundle: Path) -> dict[str, StimulusRecord]:
    from contract.bundle import read_bundle

    return {r.image_sha256: r for r in read_bundle(bundle, verify_images=False).records}


@contextmanager
def dry_run(plan: DryRunPlan, *, say: Say = print) -> Iterator[DryRun]:
    """Run the dry run; yields it with the study server and the fake still up."""
    import httpx

    from analysis.dashboard.app import create_app
    from analysis.dry_run import Crowd, recoveries
    from analysis.labels import read_database
    from analysis.table2 import compute_table2
    from study_server.db.access import describe_url, study_sessions
    from study_server.importer import import_bundle
    from study_server.loopback import serve_in_thread
    from study_server.settings import Settings, get_settings

    _check(plan)
    arms = _arms(plan)
    with ExitStack() as stack:
        workdir = plan.workdir or Path(stack.enter_context(TemporaryDirectory(prefix="dry-run-")))
        workdir.mkdir(parents=True, exist_ok=True)
        url = plan.database_url or f"sqlite:///{(workdir / 'dry-run.db').resolve()}"
        _fresh_database(url, given=plan.database_url is not None)
        sessions = stack.enter_context(study_sessions(url))
        say(f"==> 1/5 a fresh study database: {describe_url(url)}")
        slugs = []
        for bundle in plan.bundles:
            with sessions() as session:
                imported = import_bundle(
                    session=session,
                    bundle_path=bundle,
                    items_per_assignment=plan.items_per_assignment,
                    split_seed=0,
                    labels_per_image=plan.labels_per_image,
                )
            slugs.append(imported.slug)
            k = imported.labels_per_image
            say(
                f"    imported study {imported.slug!r}: {imported.stimuli} stimuli in "
                f"{imported.assignments} assignments"
                + (f" ({k} labels per image, from {k} different people)" if k > 1 else "")
            )
        people = _people(plan, sessions, slugs)

        base = get_settings()
        market: Market = (_MTurk if plan.market == "mturk" else _Prolific)(
            stack, allocation_timeout_s=base.allocation_timeout_s
        )
        token = plan.admin_token or secrets.token_urlsafe(24)
        settings = Settings(
            DATABASE_URL=url,
            admin_token=token,
            allocation_timeout_s=base.allocation_timeout_s,
            **market.server_settings(),
        )
        server = serve_in_thread(create_app(settings), port=plan.port)
        stack.callback(server.stop)
        say(f"==> 2/5 the live study server on {server.url}, {market.name}'s fake on {market.url}")

        say(f"==> 3/5 publish on {market.name}'s fake")
        for slug in slugs:
            say(f"    {slug}: {market.publish(sessions, slug, server.url)}")

        say("==> 4/5 simulated people label through the live server")
        with httpx.Client(base_url=server.url, timeout=30) as web:
            for number, (slug, arm, bundle) in enumerate(
                zip(slugs, arms, plan.bundles, strict=True)
            ):
                crowd, by_image = Crowd(arm, plan.seed, number), _by_image(bundle)
                for n in range(people[slug]):
                    person = crowd.person(n)
                    market.take_part(web, slug, n, _recognising(by_image, person.answer))
                say(f"    {slug}: {people[slug]} people, one assignment each")

        say(f"==> 5/5 {market.name}: sync, then approve what it confirmed")
        for slug in slugs:
            say(f"    {slug}: {market.review(sessions, slug)}")

        studies = read_database(url, lambda infos: [i for i in infos if i.slug in slugs])
        table = compute_table2(studies, source="auto", seed=plan.seed, resamples=plan.resamples)
        found = recoveries(table, dict(zip(slugs, arms, strict=True)))
        found.sort(key=lambda recovery: slugs.index(recovery.slug))  # as the bundles were given
        yield DryRun(url, server.url, token, tuple(slugs), table, found, market, sessions)


def _people(plan: DryRunPlan, sessions: sessionmaker[Session], slugs: list[str]) -> dict[str, int]:
    from study_server.db.store import assignment_count, find_study

    found = {}
    with sessions() as session:
        for slug in slugs:
            total = assignment_count(session, study_id=find_study(session, slug).id)
            if plan.assignments is not None and plan.assignments > total:
                raise UsageError(
                    f"--assignments {plan.assignments} is more than study {slug}'s {total} "
                    "assignments"
                )
            found[slug] = total if plan.assignments is None else plan.assignments
    return found


def _recognising(
    by_image: dict[str, StimulusRecord], answer: Callable[[StimulusRecord], int]
) -> Callable[[bytes], int]:
    """`answer`, for the PNG the server shows: the record is recognised by the image's hash."""

    def choose(png: bytes) -> int:
        record = by_image.get(hashlib.sha256(png).hexdigest())
        if record is None:
            raise RuntimeError("the server showed an image that is not in the study's bundle")
        return answer(record)

    return choose


def plan_from(args: argparse.Namespace) -> DryRunPlan:
    from analysis.planning_cli import annotators_from, change_rates

    rates = change_rates(args.change_rate, len(args.bundle) or 1)
    return DryRunPlan(
        bundles=tuple(args.bundle),
        annotators=tuple(annotators_from(args, rate) for rate in rates[: len(args.bundle)]),
        market=args.market,
        assignments=args.assignments,
        items_per_assignment=args.items,
        labels_per_image=args.labels_per_image,
        workdir=args.workdir,
        database_url=args.database_url,
        seed=args.seed,
        resamples=args.resamples,
        admin_token=_admin_token(),
        port=args.port,
    )


def _admin_token() -> str | None:
    from study_server.settings import get_settings

    token = get_settings().admin_token
    return token.get_secret_value() if token is not None and token.get_secret_value() else None


def run(args: argparse.Namespace) -> int:
    """The `advcritic dry-run` handler: bad input is exit status 2, naming the value; a
    database that refuses the connection is 1."""
    from sqlalchemy.exc import OperationalError

    from analysis.dry_run import render_recoveries
    from analysis.labels import AnalysisError
    from contract.bundle import BundleError
    from study_server.db.access import DatabaseNotReady
    from study_server.errors import StudyError

    try:
        plan = plan_from(args)
        with dry_run(plan) as done:
            print("\n" + render_recoveries(done.recoveries))
            if args.workdir or args.database_url:
                print(
                    f"The labels stay in {done.database_url}: "
                    f"analyze-study --all --database-url {done.database_url}"
                )
            if args.serve:
                _serve_until_interrupted(done, token_given=plan.admin_token is not None)
    except (AnalysisError, BundleError, DatabaseNotReady, StudyError) as error:
        raise UsageError(str(error)) from error
    except OperationalError as error:
        print(f"advcritic dry-run: cannot use the database: {error.orig}", file=sys.stderr)
        return EXIT_REFUSED
    return 0


def _serve_until_interrupted(done: DryRun, *, token_given: bool) -> None:
    where = "ADVCRITIC_ADMIN_TOKEN" if token_given else f"this run's token {done.admin_token}"
    print(
        f"\nThe dashboard: {done.server_url}/dashboard (sign in with {where}); "
        "Ctrl-C (or SIGTERM) stops the server and the fake.",
        flush=True,
    )
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())  # as Ctrl-C: stop cleanly
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    print("advcritic dry-run: stopped", file=sys.stderr)
