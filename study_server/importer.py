"""`study-server import`: a verified stimulus bundle becomes a study with its assignments.

The bundle is opened with `read_bundle`, which refuses an unknown version and any file that
does not match the manifest, before anything is written. The whole study (stimuli, images,
assignments, items) goes in one transaction: a failed import leaves nothing behind.
Importing the same bundle again is recognised by the manifest's SHA-256 and returns the
study already there instead of a copy.

The study starts with its protocol, in the same transaction: the consent and debrief texts
given (`--consent`, `--debrief`) or the built-in defaults with their placeholders, and an
attention policy (`--min-catch-accuracy`, `--min-median-response-ms`, or the settings'
default); with `--experiment` it joins that experiment (study_server/experiments.py).

`--labels-per-image K` (1 by default, as in the paper) makes K replicas of the split
(`split.replicate`): the same groups of images, each replica with its own order. Assignments
are numbered replica by replica (ordinal = replica x n + i), so the pool hands out every
image once before any image a second time.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from contract.bundle import Bundle, read_bundle
from study_server import attention, experiments
from study_server.db.models import Assignment, AssignmentItem, Event, Stimulus, Study, TextKind
from study_server.db.session import begin_write
from study_server.errors import ImportRefused
from study_server.protocol_texts import RenderedText, add_version, default_text
from study_server.slug import SLUG_RULE, is_slug
from study_server.split import replicate, split_into_assignments

# The manifest fields kept per stimulus (the rest describe the model, kept once on the study).
STIMULUS_FIELDS = (
    "kind",
    "source_index",
    "original_label",
    "prediction_original",
    "confidence_original",
    "target",
    "prediction_adversarial",
    "confidence_adversarial",
    "perturbation_l2",
    "rho",
    "success",
    "reached_confidence",
    "iterations",
    "image_sha256",
)


@dataclass(frozen=True)
class ImportResult:
    study_id: int
    slug: str
    created: bool
    stimuli: int
    assignments: int
    experiment: str | None = None
    labels_per_image: int = 1
    # Whether this import put the study into `experiment` (a re-import may, once).
    joined: bool = False


@dataclass(frozen=True)
class Protocol:
    """What a new study starts with: its texts (None: the built-in default, with
    placeholders; the path they were read from is kept) and its attention policy."""

    consent: RenderedText | None = None
    consent_name: str | None = None
    debrief: RenderedText | None = None
    debrief_name: str | None = None
    policy: attention.PolicySpec = field(default_factory=attention.PolicySpec)
    # "default" (the settings' policy) or "import" (given on the command line).
    policy_origin: str = "default"

    @property
    def chosen(self) -> bool:
        """Whether anything was given beyond the defaults."""
        return bool(self.consent or self.debrief or self.policy_origin != "default")


def default_slug(bundle: Bundle) -> str:
    """`<defense>-<network>`, e.g. `ours-fc`: what `mturk publish --study` expects by default."""
    return re.sub(
        r"[^a-z0-9-]+", "-", f"{bundle.meta.defense}-{bundle.meta.network}".lower()
    ).strip("-")


def import_bundle(
    *,
    session: Session,
    bundle_path: str | Path,
    slug: str | None = None,
    items_per_assignment: int,
    split_seed: int,
    protocol: Protocol | None = None,
    experiment: str | None = None,
    labels_per_image: int | None = None,
) -> ImportResult:
    """Import the bundle at `bundle_path` (BundleError if it cannot be trusted).

    A bundle imported before is the study already there: with `experiment` it joins it (if
    not in it), but its texts and policy change only through `study-server protocol`, and
    its labels per image never change (None: 1 for a new study, the study's own for one
    imported before; another value is refused)."""
    if labels_per_image is not None:
        check_labels_per_image(labels_per_image)
    bundle = read_bundle(bundle_path)
    slug = slug or default_slug(bundle)
    protocol = protocol or Protocol()
    if not is_slug(slug):
        raise ImportRefused(f"study slug {slug!r} must be {SLUG_RULE}")
    if not bundle.records:
        raise ImportRefused(f"{bundle.path}: the bundle holds no stimuli")
    begin_write(session)
    existing = _existing_study(session, bundle=bundle, slug=slug)
    if existing is not None:
        if protocol.chosen:
            session.rollback()
            raise ImportRefused(
                f"study {slug!r} is imported already; change its texts or policy with "
                f"`study-server protocol attach|attention {slug}` (nothing changed)"
            )
        if labels_per_image is not None and existing.labels_per_image != labels_per_image:
            session.rollback()
            raise ImportRefused(
                f"study {slug!r} is imported already with {existing.labels_per_image} label(s) "
                f"per image; --labels-per-image {labels_per_image} cannot change it (nothing "
                "changed)"
            )
        return _join_existing(session, existing, experiment)
    try:
        result = _create_study(
            session,
            bundle=bundle,
            slug=slug,
            items_per_assignment=items_per_assignment,
            split_seed=split_seed,
            protocol=protocol,
            experiment=experiment,
            labels_per_image=labels_per_image or 1,
        )
        session.commit()
    except IntegrityError:
        # Another import of the same bundle won the race: report the study it made.
        session.rollback()
        begin_write(session)
        existing = _existing_study(session, bundle=bundle, slug=slug)
        session.rollback()
        if existing is None:
            raise
        return existing
    return result


def _existing_study(session: Session, *, bundle: Bundle, slug: str) -> ImportResult | None:
    study = session.scalar(select(Study).where(Study.manifest_sha256 == bundle.manifest_sha256))
    if study is not None:
        if study.slug != slug:
            raise ImportRefused(
                f"this bundle is already imported as study {study.slug!r}; it cannot also be "
                f"{slug!r}"
            )
        return ImportResult(
            study.id,
            study.slug,
            False,
            len(bundle.records),
            len(study.assignments),
            experiment=study.experiment.slug if study.experiment else None,
            labels_per_image=study.labels_per_image,
        )
    if session.scalar(select(Study.id).where(Study.slug == slug)) is not None:
        raise ImportRefused(
            f"study slug {slug!r} is taken by another bundle; choose one with --slug"
        )
    return None


def _join_existing(session: Session, found: ImportResult, experiment: str | None) -> ImportResult:
    """A re-import: join `experiment` if the study is not in it yet (or refuse why not)."""
    if experiment is None or found.experiment == experiment:
        session.rollback()
        return found
    group = experiments.find_experiment(session, experiment, list_known=True)
    experiments.join(session, group, [found.slug])
    session.commit()
    return replace(found, experiment=experiment, joined=True)


def _create_study(
    session: Session,
    *,
    bundle: Bundle,
    slug: str,
    items_per_assignment: int,
    split_seed: int,
    protocol: Protocol,
    experiment: str | None,
    labels_per_image: int,
) -> ImportResult:
    group = None
    if experiment is not None:
        group = experiments.find_experiment(session, experiment, list_known=True)
    meta = bundle.meta
    study = Study(
        slug=slug,
        defense=meta.defense,
        network=meta.network,
        dataset=meta.dataset,
        seed=meta.seed,
        bundle_version=bundle.version,
        manifest_sha256=bundle.manifest_sha256,
        checkpoint_sha256=meta.checkpoint_sha256,
        num_classes=meta.num_classes,
        class_names=list(meta.class_names),
        attack=dict(meta.attack),
        items_per_assignment=items_per_assignment,
        split_seed=split_seed,
        labels_per_image=labels_per_image,
    )
    session.add(study)
    session.flush()
    start_protocol(session, study_id=study.id, protocol=protocol)
    if group is not None:
        experiments.join(session, group, [slug])
    rows = []
    for record in bundle.records:
        fields = asdict(record)
        rows.append(
            {
                "study_id": study.id,
                "stimulus_key": record.stimulus_id,
                "image_png": bundle.image_bytes(record),
                **{name: fields[name] for name in STIMULUS_FIELDS},
            }
        )
    stimulus_ids = dict(
        session.execute(
            insert(Stimulus).returning(
                Stimulus.stimulus_key, Stimulus.id, sort_by_parameter_order=True
            ),
            rows,
        ).all()
    )
    groups = split_into_assignments(
        [r.stimulus_id for r in bundle.adversarial],
        [r.stimulus_id for r in bundle.catch],
        items_per_assignment=items_per_assignment,
        seed=split_seed,
    )
    layouts = replicate(groups, replicas=labels_per_image, seed=split_seed)
    count = add_assignments(session, study_id=study.id, layouts=layouts, stimulus_ids=stimulus_ids)
    session.add(
        Event(
            study_id=study.id,
            kind="study_imported",
            detail={
                "bundle": str(bundle.path),
                "manifest_sha256": bundle.manifest_sha256,
                "stimuli": len(rows),
                "assignments": count,
                "items_per_assignment": items_per_assignment,
                "split_seed": split_seed,
                "labels_per_image": labels_per_image,
            },
        )
    )
    return ImportResult(
        study.id,
        slug,
        True,
        len(rows),
        count,
        experiment=group.slug if group else None,
        joined=group is not None,
        labels_per_image=labels_per_image,
    )


def start_protocol(session: Session, *, study_id: int, protocol: Protocol) -> None:
    """A new study's first texts (given, or the built-in defaults) and attention policy."""
    for kind, text, name in (
        (TextKind.consent, protocol.consent, protocol.consent_name),
        (TextKind.debrief, protocol.debrief, protocol.debrief_name),
    ):
        add_version(
            session,
            study_id=study_id,
            kind=kind,
            text=text or default_text(kind),
            source_name=name if text else None,
        )
    attention.add_policy(
        session, study_id=study_id, spec=protocol.policy, origin=protocol.policy_origin
    )


def check_labels_per_image(value: int) -> None:
    """k must be a whole number of at least 1 (ImportRefused, exit status 2, otherwise)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ImportRefused(f"--labels-per-image must be a whole number >= 1, got {value!r}")


def add_assignments(
    session: Session,
    *,
    study_id: int,
    layouts: list[list[list[str]]],
    stimulus_ids: dict[str, int],
) -> int:
    """The assignments of each replica's layout (stimulus keys per assignment, in order):
    ordinal = replica x n + i. Returns how many were made."""
    per_replica = len(layouts[0])
    assignment_rows = [
        {
            "study_id": study_id,
            "ordinal": replica * per_replica + index,
            "replica": replica,
            "public_id": secrets.token_urlsafe(16),
        }
        for replica, layout in enumerate(layouts)
        for index in range(len(layout))
    ]
    assignment_ids = session.scalars(
        insert(Assignment).returning(Assignment.id, sort_by_parameter_order=True), assignment_rows
    ).all()
    groups = [(replica, group) for replica, layout in enumerate(layouts) for group in layout]
    session.execute(
        insert(AssignmentItem),
        [
            {
                "assignment_id": assignment_id,
                "position": position,
                "stimulus_id": stimulus_ids[key],
                "replica": replica,
            }
            for assignment_id, (replica, group) in zip(assignment_ids, groups, strict=True)
            for position, key in enumerate(group)
        ],
    )
    return len(assignment_rows)
