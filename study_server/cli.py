"""`study-server`: migrate the database, import stimulus bundles, serve the labeling page.

    study-server migrate                      # create or upgrade the schema (Alembic)
    study-server import BUNDLE [--slug S]     # a bundle becomes a study of assignments
           [--experiment E] [--consent FILE] [--debrief FILE]
           [--min-catch-accuracy X] [--min-median-response-ms N]
    study-server serve [--host H --port P]    # uvicorn: HIT page, lab link, admin API
                       [--app analysis.dashboard.app:create_app]     # ... and the dashboard
    study-server studies                      # what is imported, and how far labeling got
    study-server invite SLUG --n 40           # 40 single-use lab links (codes stored hashed)
    study-server lab-url SLUG                 # the lab page where a printed code is typed
    study-server demo-bundle OUT              # a synthetic bundle to try all this (not a study)
    study-server experiment create E --study A --study B   # one pool of people for studies
    study-server experiment add E --study C | list
    study-server protocol show SLUG           # consent/debrief versions, attention policy
    study-server protocol defaults DIR        # the built-in texts, to edit
    study-server protocol attach SLUG|--experiment E [--consent FILE] [--debrief FILE]
    study-server protocol attention SLUG|--experiment E --min-catch-accuracy X ...

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
from study_server.attention import PolicySpec
from study_server.db.access import DatabaseNotReady, describe_url, open_engine
from study_server.db.migrate import current_revision, upgrade
from study_server.db.session import create_session_factory
from study_server.errors import StudyError
from study_server.links import hit_url, lab_invitation_url, lab_url
from study_server.protocol_texts import read_text_file
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


def _default_policy(settings: Settings) -> PolicySpec:
    try:
        return PolicySpec(
            settings.attention.min_catch_accuracy, settings.attention.min_median_response_ms
        )
    except ValueError as error:
        raise UsageError(f"ADVCRITIC_ATTENTION_*: {error}") from error


# `--min-catch-accuracy none`: the policy has no minimum of that kind.
OFF = "none"


def _policy(args: argparse.Namespace, default: PolicySpec) -> PolicySpec | None:
    """The policy the options ask for, the rest from `default` (None: no option given)."""
    catch, time = args.min_catch_accuracy, args.min_median_response_ms
    if catch is None and time is None:
        return None
    try:
        return PolicySpec(
            default.min_catch_accuracy if catch is None else (None if catch == OFF else catch),
            default.min_median_response_ms if time is None else (None if time == OFF else time),
        )
    except ValueError as error:
        raise UsageError(str(error)) from error


def _number_or_off(kind: type[float | int], name: str):
    def parse(text: str) -> float | int | str:
        if text.strip().lower() == OFF:
            return OFF
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{name} must be a {'share like 0.8' if kind is float else 'whole number of ms'} "
                f"or 'none', got {text!r}"
            ) from None

    return parse


def cmd_import(args: argparse.Namespace) -> None:
    from study_server.importer import Protocol, import_bundle

    settings = _settings(args)
    if args.items_per_assignment is not None and args.items_per_assignment < 1:
        raise UsageError(
            f"--items-per-assignment must be at least 1, got {args.items_per_assignment}"
        )
    default = _default_policy(settings)
    policy = _policy(args, default)
    protocol = Protocol(
        consent=read_text_file(args.consent) if args.consent else None,
        consent_name=str(args.consent) if args.consent else None,
        debrief=read_text_file(args.debrief) if args.debrief else None,
        debrief_name=str(args.debrief) if args.debrief else None,
        policy=policy or default,
        policy_origin="default" if policy is None else "import",
    )
    factory = _session_factory(settings)
    with factory() as session:
        result = import_bundle(
            session=session,
            bundle_path=args.bundle,
            slug=args.slug,
            items_per_assignment=args.items_per_assignment or settings.items_per_assignment,
            split_seed=settings.split_seed if args.split_seed is None else args.split_seed,
            protocol=protocol,
            experiment=args.experiment,
            labels_per_image=args.labels_per_image,
        )
    if result.created:
        k = result.labels_per_image
        replicas = (
            f" ({k} labels per image, each from a different person: {k} replicas of "
            f"{result.assignments // k})"
            if k > 1
            else ""
        )
        print(
            f"imported study {result.slug!r}: {result.stimuli} stimuli in {result.assignments} "
            f"assignments{replicas}"
        )
        print(
            f"protocol:  consent {args.consent or 'built-in default (edit it)'}, "
            f"debrief {args.debrief or 'built-in default (edit it)'}; "
            f"attention policy: {protocol.policy.describe()}"
        )
    elif result.joined:
        print(
            f"already imported as study {result.slug!r}; it joined experiment {result.experiment!r}"
        )
    else:
        print(
            f"already imported as study {result.slug!r} ({result.assignments} assignments); "
            "nothing changed"
        )
    if result.created and result.experiment:
        print(f"experiment: {result.experiment} (one study per person across its studies)")
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
            attention = ", ".join(f"{k} {n}" for k, n in sorted(progress["attention"].items()))
            experiment = f" [experiment {progress['experiment']}]" if progress["experiment"] else ""
            print(
                f"{slug}{experiment}: {done}/{total} assignments submitted, "
                f"{progress['labels']} labels, {progress['assignments']['allocated']} in progress"
                + (f"; attention: {attention}" if attention else "")
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


def cmd_experiment(args: argparse.Namespace) -> None:
    from study_server import experiments
    from study_server.db.session import begin_write

    factory = _session_factory(_settings(args))
    with factory() as session:
        if args.action == "list":
            _list_experiments(session)
            return
        if args.action == "layout":
            _layout(session, args, _settings(args))
            return
        if args.action == "add" and not args.study:
            raise UsageError("name the studies to add: --study SLUG (repeatable)")
        begin_write(session)
        if args.action == "create":
            result = experiments.create(
                session, slug=args.experiment, title=args.title, study_slugs=args.study
            )
        else:
            found = experiments.find_experiment(session, args.experiment, list_known=True)
            result = experiments.join(session, found, args.study)
        session.commit()
    verb = "created experiment" if result.created else "experiment"
    print(f"{verb} {result.experiment!r}: studies {', '.join(result.members) or 'none yet'}")
    if result.joined:
        print(f"  joined now: {', '.join(result.joined)}")
    if result.already:
        print(f"  already in it: {', '.join(result.already)}")
    for slug, n in result.study_bound_codes.items():
        print(
            f"  note: {n} lab code(s) minted for {slug} before it joined stay good for {slug} only; "
            "the server cannot tell that they are people of the other studies: mint new ones "
            f"(study-server invite {slug} --n N) for the experiment"
        )
    print(
        "  each person now takes part in one of these studies: the server refuses the others; "
        "MTurk and Prolific exclude them at the next publish/sync"
    )


def _layout(session: Session, args: argparse.Namespace, settings: Settings) -> None:
    from study_server.interleaved import lay_out

    result = lay_out(
        session,
        experiment=args.experiment,
        seed=settings.split_seed if args.seed is None else args.seed,
        items_per_assignment=args.items_per_assignment or settings.items_per_assignment,
        labels_per_image=args.labels_per_image,
        slug=args.slug,
    )
    if not result.created:
        print(
            f"already laid out as study {result.slug!r} ({result.assignments} assignments); "
            "nothing changed"
        )
        return
    k = result.labels_per_image
    print(
        f"laid out study {result.slug!r} of experiment {result.experiment!r}: "
        f"{result.stimuli} stimuli of {', '.join(result.defenses)} in {result.assignments} "
        f"interleaved assignments (Latin square over {result.digits} source digits"
        + (f"; {k} labels per image" if k > 1 else "")
        + ")"
    )
    for defense, n in sorted(result.left_out.items()):
        print(f"  left out: {n} {defense} stimuli whose source digit is not in every study")
    if result.catch_duplicates:
        print(
            f"  catch trials: {result.catch_duplicates} of a digit another study's catch trial "
            "shows already, kept once"
        )
    if result.catch_left_out:
        print(
            f"  left out: {result.catch_left_out} catch trial(s) for which no assignment is free "
            "of their digit"
        )
    print(
        "  nobody sees two versions of a digit; a person takes part in this study or in one "
        "of the experiment's others, never both"
    )
    print(f"HIT page:  {hit_url(settings, result.slug)}")
    print(f"lab page:  {lab_url(settings, result.slug)}")


def _list_experiments(session: Session) -> None:
    from sqlalchemy import select

    from study_server.db.models import Experiment
    from study_server.experiments import experiment_studies

    rows = session.scalars(select(Experiment).order_by(Experiment.slug)).all()
    if not rows:
        print("no experiments yet: `study-server experiment create SLUG --study A --study B`")
    for experiment in rows:
        studies = experiment_studies(session, experiment.id)
        listed = ", ".join(f"{s.slug} ({s.defense}/{s.network})" for s in studies) or "no studies"
        print(f"{experiment.slug}: {listed}")


def _target_studies(session: Session, args: argparse.Namespace) -> list[str]:
    """The study named, or every study of `--experiment`."""
    from study_server.db.store import find_study
    from study_server.experiments import experiment_studies, find_experiment

    if (args.slug is None) == (args.experiment is None):
        raise UsageError("name a study (SLUG) or an experiment (--experiment E), one of the two")
    if args.slug is not None:
        return [find_study(session, args.slug, list_known=True).slug]
    experiment = find_experiment(session, args.experiment, list_known=True)
    studies = [s.slug for s in experiment_studies(session, experiment.id)]
    if not studies:
        raise UsageError(f"experiment {args.experiment!r} has no studies yet")
    return studies


def cmd_protocol(args: argparse.Namespace) -> None:
    if args.action == "defaults":
        _write_defaults(args.out)
        return
    factory = _session_factory(_settings(args))
    with factory() as session:
        if args.action == "show":
            _show_protocol(session, args.slug)
        elif args.action == "attach":
            _attach(session, args)
        else:
            _set_attention(session, args)


def _write_defaults(out: Path) -> None:
    from study_server.db.models import TextKind
    from study_server.protocol_texts import default_source

    out.mkdir(parents=True, exist_ok=True)
    for kind in TextKind:
        path = out / f"{kind.value}.md"
        if path.exists():
            raise UsageError(f"{path} exists; nothing written (choose an empty folder)")
    for kind in TextKind:
        (out / f"{kind.value}.md").write_text(default_source(kind), encoding="utf-8")
        print(out / f"{kind.value}.md")
    print(
        "edit every [EDIT: ...] placeholder, then: study-server protocol attach SLUG "
        f"--consent {out / 'consent.md'} --debrief {out / 'debrief.md'}",
        file=sys.stderr,
    )


def _show_protocol(session: Session, slug: str) -> None:
    from sqlalchemy import func, select

    from study_server.attention import PolicySpec, current_policy
    from study_server.db.models import Allocation, AttentionPolicy, ProtocolText, TextKind
    from study_server.db.store import find_study

    study = find_study(session, slug, list_known=True)
    experiment = study.experiment.slug if study.experiment else "none"
    print(f"study {study.slug} ({study.defense}/{study.network}); experiment: {experiment}")
    for kind in TextKind:
        versions = session.scalars(
            select(ProtocolText)
            .where(ProtocolText.study_id == study.id, ProtocolText.kind == kind)
            .order_by(ProtocolText.version)
        ).all()
        for text in versions:
            current = " (current)" if text is versions[-1] else ""
            origin = text.source_name or "built-in default"
            left = (
                f"; {text.placeholders} [EDIT: ...] placeholder(s) left"
                if text.placeholders
                else ""
            )
            column, verb = (
                (Allocation.consent_text_id, "agreed to by")
                if kind == TextKind.consent
                else (Allocation.debrief_text_id, "given to")
            )
            n = session.scalar(
                select(func.count()).select_from(Allocation).where(column == text.id)
            )
            agreed = f"; {verb} {n}"
            print(
                f"  {kind.value} v{text.version}{current}: sha256 {text.sha256}, from {origin}, "
                f"{text.created_at:%Y-%m-%d %H:%M}Z{agreed}{left}"
            )
    for policy in session.scalars(
        select(AttentionPolicy)
        .where(AttentionPolicy.study_id == study.id)
        .order_by(AttentionPolicy.version)
    ):
        latest = current_policy(session, study_id=study.id)
        current = " (current)" if latest is not None and policy.id == latest.id else ""
        note = f", {policy.note}" if policy.note else ""
        print(
            f"  attention policy v{policy.version}{current}: {PolicySpec.of(policy).describe()} "
            f"({policy.origin}{note}, {policy.created_at:%Y-%m-%d %H:%M}Z)"
        )
    outcomes = session.execute(
        select(Allocation.attention, func.count())
        .where(Allocation.study_id == study.id, Allocation.attention.is_not(None))
        .group_by(Allocation.attention)
    ).all()
    judged = ", ".join(
        f"{outcome.value} {n}" for outcome, n in sorted(outcomes, key=lambda r: r[0].value)
    )
    print(f"  submissions judged: {judged or 'none yet'}")


def _attach(session: Session, args: argparse.Namespace) -> None:
    from study_server.db.models import TextKind
    from study_server.protocol_texts import attach_files

    files = {
        kind: path
        for kind, path in ((TextKind.consent, args.consent), (TextKind.debrief, args.debrief))
        if path is not None
    }
    if not files:
        raise UsageError("give --consent FILE, --debrief FILE or both")
    studies = _target_studies(session, args)
    session.rollback()
    for done in attach_files(session, study_slugs=studies, files=files):
        what = f"version {done.version}" if done.created else f"unchanged (version {done.version})"
        left = (
            f"; {done.placeholders} [EDIT: ...] placeholder(s) left: not ready for paid work"
            if done.placeholders
            else ""
        )
        print(f"{done.study}: {done.kind.value} {what}, sha256 {done.sha256}{left}")


def _set_attention(session: Session, args: argparse.Namespace) -> None:
    from study_server.attention import PolicySpec, add_policy, current_policy, reevaluate
    from study_server.db.session import begin_write
    from study_server.db.store import find_study

    studies = _target_studies(session, args)
    session.rollback()
    begin_write(session)
    for slug in studies:
        study = find_study(session, slug)
        latest = current_policy(session, study_id=study.id)
        base = PolicySpec.of(latest) if latest else PolicySpec()
        spec = _policy(args, base)
        if spec is None:
            raise UsageError("give --min-catch-accuracy and/or --min-median-response-ms")
        row = add_policy(session, study_id=study.id, spec=spec, origin="command", note=args.note)
        result = reevaluate(session, study_id=study.id)
        changed = "; ".join(f"{what}: {n}" for what, n in result.changed.items()) or "no change"
        outcomes = ", ".join(f"{k} {n}" for k, n in result.outcomes.items()) or "none"
        print(
            f"{slug}: attention policy v{row.version}: {spec.describe()}; re-judged "
            f"{result.judged} submission(s): {outcomes} ({changed})"
        )
    session.commit()


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
    sub.add_argument(
        "--labels-per-image",
        type=int,
        default=None,
        metavar="K",
        help="labels per image, each from a different person: K replicas of the assignments "
        "(default 1, as in the paper; a study imported before keeps its own)",
    )
    sub.add_argument(
        "--experiment", help="join this experiment (made with `study-server experiment create`)"
    )
    _protocol_files(sub)
    _attention_options(sub)
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
    sub = add(
        "experiment", cmd_experiment, "group studies into one experiment (one pool of people)"
    )
    sub.add_argument("action", choices=["create", "add", "list", "layout"])
    sub.add_argument("experiment", nargs="?", help="the experiment's slug (create, add, layout)")
    sub.add_argument("--study", action="append", default=[], metavar="SLUG", help="repeatable")
    sub.add_argument("--title", help="with create: a title kept with the experiment")
    layout = sub.add_argument_group(
        "layout --interleaved: one more study whose assignments mix the experiment's defenses "
        "(a Latin square; nobody sees two versions of a digit)"
    )
    layout.add_argument("--interleaved", action="store_true", help="required with layout")
    layout.add_argument("--seed", type=int, help="seed of the layout (default: settings, 0)")
    layout.add_argument("--slug", help="the new study's slug (default: <experiment>-interleaved)")
    layout.add_argument(
        "--items-per-assignment", type=int, help="items per assignment (default: settings, 25)"
    )
    layout.add_argument(
        "--labels-per-image", type=int, default=1, metavar="K", help="replicas (default 1)"
    )
    sub.set_defaults(check=_check_experiment_args)
    sub = add(
        "protocol",
        cmd_protocol,
        "a study's consent and debrief texts and attention policy: show, defaults, attach, "
        "attention",
    )
    sub.add_argument("action", choices=["show", "defaults", "attach", "attention"])
    sub.add_argument("slug", nargs="?", help="the study (show, attach, attention)")
    sub.add_argument("--experiment", help="attach/attention: every study of this experiment")
    sub.add_argument("--out", type=Path, help="defaults: the folder to write the texts to")
    sub.add_argument("--note", help="attention: why the policy changed (kept with it)")
    _protocol_files(sub)
    _attention_options(sub)
    sub.set_defaults(check=_check_protocol_args)
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


def _protocol_files(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--consent",
        type=Path,
        help="consent text, Markdown (.md) or HTML (.html) (default: built-in)",
    )
    sub.add_argument("--debrief", type=Path, help="debrief text, Markdown or HTML")


def _attention_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--min-catch-accuracy",
        type=_number_or_off(float, "--min-catch-accuracy"),
        metavar="X",
        help="attention policy: share of an assignment's catch trials labeled right, 0-1, or "
        "'none' (default: ADVCRITIC_ATTENTION_MIN_CATCH_ACCURACY, 0.5)",
    )
    sub.add_argument(
        "--min-median-response-ms",
        type=_number_or_off(int, "--min-median-response-ms"),
        metavar="MS",
        help="attention policy: median time per image in ms, or 'none' (the default)",
    )


def _check_experiment_args(args: argparse.Namespace) -> None:
    if args.action != "list" and not args.experiment:
        raise UsageError(f"experiment {args.action} needs the experiment's slug")
    if args.action == "layout" and not args.interleaved:
        raise UsageError(
            "experiment layout needs --interleaved (the per-defense layout is what "
            "`study-server import` makes)"
        )
    if args.action != "layout" and (args.interleaved or args.seed is not None or args.slug):
        raise UsageError("--interleaved, --seed and --slug go with `experiment layout`")
    if args.action == "list" and (args.experiment or args.study):
        raise UsageError("experiment list takes no slug or --study")


def _check_protocol_args(args: argparse.Namespace) -> None:
    if args.action == "defaults":
        if args.out is None:
            raise UsageError("protocol defaults needs --out DIR")
        return
    if args.action == "show" and args.slug is None:
        raise UsageError("protocol show needs the study's slug")
    if args.action != "attach" and (args.consent or args.debrief):
        raise UsageError("--consent and --debrief go with `protocol attach`")
    if args.action != "attention" and (
        args.min_catch_accuracy is not None or args.min_median_response_ms is not None
    ):
        raise UsageError("the policy options go with `protocol attention`")


class DatabaseUnavailable(Exception):
    """The database refused the connection or the statement (exit status 1)."""


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def call() -> None:
        try:
            if getattr(args, "check", None) is not None:
                args.check(args)
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
