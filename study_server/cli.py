"""`study-server`: migrate the database, import stimulus bundles, serve the labeling page.

    study-server migrate                      # create or upgrade the schema (Alembic)
    study-server import BUNDLE [--slug S]     # a bundle becomes a study of assignments
    study-server serve [--host H --port P]    # uvicorn: HIT page, lab link, admin API
                       [--app analysis.dashboard.app:create_app]     # ... and the dashboard
    study-server studies                      # what is imported, and how far labeling got
    study-server invite SLUG --n 40           # 40 single-use lab links (codes stored hashed)
    study-server lab-url SLUG                 # the lab page where a printed code is typed
    study-server demo-bundle OUT              # a synthetic bundle to try all this (not a study)

The database is DATABASE_URL from settings (SQLite file `advcritic.db` by default), or
`--database-url`. Bad input (a bundle that fails verification, an unknown study, a slug
taken) is a message naming it and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from contract.bundle import BundleError
from contract.cli import UsageError, run_command
from study_server.db.access import DatabaseNotReady, describe_url, open_engine
from study_server.db.migrate import current_revision, upgrade
from study_server.db.session import create_session_factory
from study_server.errors import StudyError
from study_server.links import hit_url, lab_invitation_url, lab_url
from study_server.settings import Settings, get_settings

SERVER_APP = "study_server.api.app:create_app"
# Named here as text only: the dashboard lives in `analysis`, which this package may not import.
DASHBOARD_APP = "analysis.dashboard.app:create_app"


def _settings(args: argparse.Namespace) -> Settings:
    settings = get_settings()
    overrides = {
        name: getattr(args, name)
        for name in ("database_url", "public_url")
        if getattr(args, name, None)
    }
    return settings.model_copy(update=overrides) if overrides else settings


def _session_factory(settings: Settings) -> sessionmaker[Session]:
    """Sessions on the settings' database, refusing one the migrations have not reached."""
    return create_session_factory(open_engine(settings.database_url))


def cmd_migrate(args: argparse.Namespace) -> None:
    settings = _settings(args)
    upgrade(settings.database_url)
    print(
        f"database {describe_url(settings.database_url)} is at revision "
        f"{current_revision(settings.database_url)} (head)"
    )


def cmd_import(args: argparse.Namespace) -> None:
    from study_server.importer import import_bundle

    settings = _settings(args)
    if args.items_per_assignment is not None and args.items_per_assignment < 1:
        raise UsageError(
            f"--items-per-assignment must be at least 1, got {args.items_per_assignment}"
        )
    factory = _session_factory(settings)
    with factory() as session:
        result = import_bundle(
            session=session,
            bundle_path=args.bundle,
            slug=args.slug,
            items_per_assignment=args.items_per_assignment or settings.items_per_assignment,
            split_seed=settings.split_seed if args.split_seed is None else args.split_seed,
        )
    if result.created:
        print(
            f"imported study {result.slug!r}: {result.stimuli} stimuli in {result.assignments} "
            "assignments"
        )
    else:
        print(
            f"already imported as study {result.slug!r} ({result.assignments} assignments); "
            "nothing changed"
        )
    print(f"HIT page:  {hit_url(settings, result.slug)}")
    print(
        f"lab page:  {lab_url(settings, result.slug)}  "
        f"(invitation links: study-server invite {result.slug} --n N)"
    )


def cmd_studies(args: argparse.Namespace) -> None:
    from sqlalchemy import select

    from study_server.db.models import Study
    from study_server.operations import study_progress

    factory = _session_factory(_settings(args))
    with factory() as session:
        slugs = session.scalars(select(Study.slug).order_by(Study.id)).all()
        if not slugs:
            print("no studies yet: `study-server import BUNDLE`")
        for slug in slugs:
            progress = asdict(study_progress(session=session, study_slug=slug))
            done, total = (
                progress["assignments"]["submitted"],
                sum(progress["assignments"].values()),
            )
            print(
                f"{slug}: {done}/{total} assignments submitted, {progress['labels']} labels, "
                f"{progress['assignments']['allocated']} in progress"
            )


def cmd_lab_url(args: argparse.Namespace) -> None:
    from study_server.db.store import find_study

    settings = _settings(args)
    factory = _session_factory(settings)
    with factory() as session:
        find_study(session, args.slug)
    print(lab_url(settings, args.slug))


def cmd_invite(args: argparse.Namespace) -> None:
    from study_server.invitations import MAX_PER_RUN, mint

    if not 1 <= args.n <= MAX_PER_RUN:
        raise UsageError(f"--n must be between 1 and {MAX_PER_RUN}, got {args.n}")
    if args.note is not None and not 1 <= len(args.note) <= 200:
        raise UsageError(f"--note must be 1 to 200 characters, got {len(args.note)}")
    settings = _settings(args)
    factory = _session_factory(settings)
    with factory() as session:
        codes = mint(session, study_slug=args.slug, n=args.n, note=args.note)
    for code in codes:
        print(lab_invitation_url(settings, args.slug, code))
    print(
        f"study-server invite: {len(codes)} single-use lab link(s) for study {args.slug!r}; "
        "the codes are stored hashed: keep these links, they cannot be shown again",
        file=sys.stderr,
    )
    if not settings.local_mode:
        print(
            "study-server invite: note: the lab mode is off on this server "
            "(ADVCRITIC_LOCAL_MODE=false); these links open nothing until it is on",
            file=sys.stderr,
        )


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn
    from uvicorn.importer import ImportFromStringError, import_from_string

    from study_server.api.clients import uvicorn_proxy_options

    settings = _settings(args)
    host = args.host or settings.host
    port = settings.port if args.port is None else args.port
    _session_factory(settings)  # refuse to start on an unmigrated database
    try:
        create_app = import_from_string(args.app)
    except ImportFromStringError as error:
        raise UsageError(f"--app {args.app!r}: {error}") from error
    if args.workers > 1:
        # Each worker process builds its app from the environment; hand the override down.
        if args.database_url:
            os.environ["DATABASE_URL"] = args.database_url
        uvicorn.run(
            args.app,
            factory=True,
            host=host,
            port=port,
            workers=args.workers,
            log_level=args.log_level,
            access_log=args.access_log,
            **uvicorn_proxy_options(settings),
        )
        return
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level=args.log_level,
        access_log=args.access_log,
        **uvicorn_proxy_options(settings),
    )


def cmd_demo_bundle(args: argparse.Namespace) -> None:
    from study_server.synthetic import write_synthetic_bundle

    if args.n < 1 or args.catch < 0:
        raise UsageError(
            f"--n must be at least 1 and --catch at least 0, got {args.n} and {args.catch}"
        )
    path = write_synthetic_bundle(
        args.out,
        n_adversarial=args.n,
        n_catch=args.catch,
        defense=args.defense,
        network=args.network,
    )
    print(f"wrote a synthetic bundle (not a study) of {args.n + args.catch} images to {path}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="study-server", description="The labeling server of the human study."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str, handler: Callable[[argparse.Namespace], None], help_text: str
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument(
            "--database-url", help="overrides DATABASE_URL (e.g. postgresql://user@host/db)"
        )
        sub.add_argument(
            "--public-url",
            help="overrides ADVCRITIC_PUBLIC_URL, the address people open (printed links)",
        )
        sub.set_defaults(handler=handler)
        return sub

    add("migrate", cmd_migrate, "create or upgrade the database schema (Alembic)")
    sub = add("import", cmd_import, "import a stimulus bundle as a study")
    sub.add_argument(
        "bundle", type=Path, help="the bundle folder (bundle.json, manifest.jsonl, images/)"
    )
    sub.add_argument("--slug", help="the study's name in URLs (default: <defense>-<network>)")
    sub.add_argument(
        "--items-per-assignment", type=int, help="items per assignment (default: settings, 25)"
    )
    sub.add_argument(
        "--split-seed", type=int, help="seed of the split into assignments (default: settings, 0)"
    )
    add("studies", cmd_studies, "list the studies and their progress")
    sub = add("invite", cmd_invite, "mint single-use lab invitation links for a study")
    sub.add_argument("slug")
    sub.add_argument("--n", type=int, default=1, help="how many codes (default 1)")
    sub.add_argument("--note", help="a note kept with the codes (e.g. the session)")
    sub = add("lab-url", cmd_lab_url, "print the lab page of a study (a code is typed there)")
    sub.add_argument("slug")
    sub = add("serve", cmd_serve, "serve the labeling page and API with uvicorn")
    sub.add_argument("--host", help="default: settings (127.0.0.1)")
    sub.add_argument("--port", type=int, help="default: settings (8000); 0 picks a free port")
    sub.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (default 1)")
    sub.add_argument(
        "--app",
        default=SERVER_APP,
        metavar="MODULE:FACTORY",
        help=f"the app factory to serve (default {SERVER_APP}; {DASHBOARD_APP} adds the admin "
        "dashboard, docs/dashboard.md)",
    )
    sub.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    sub.add_argument("--no-access-log", dest="access_log", action="store_false")
    sub = commands.add_parser(
        "demo-bundle", help="write a synthetic bundle to try the server (not a study)"
    )
    sub.add_argument("out", type=Path)
    sub.add_argument("--n", type=int, default=100, help="adversarial-like images (default 100)")
    sub.add_argument("--catch", type=int, default=0, help="catch trials (default 0)")
    sub.add_argument("--defense", default="demo")
    sub.add_argument("--network", default="fc")
    sub.set_defaults(handler=cmd_demo_bundle)
    return parser


class DatabaseUnavailable(Exception):
    """The database refused the connection or the statement (exit status 1)."""


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def call() -> None:
        try:
            args.handler(args)
        except OperationalError as error:
            raise DatabaseUnavailable(f"cannot use the database: {error.orig}") from error

    return run_command(
        f"study-server {args.command}",
        call,
        usage=(BundleError, StudyError, ArgumentError, DatabaseNotReady, LookupError),
        refused=(DatabaseUnavailable,),
    )


if __name__ == "__main__":
    sys.exit(main())
