"""`study-server experiment layout E --interleaved`: one study whose assignments mix the
defenses of an experiment.

The experiment's studies (one per defense, each imported from its bundle) stay as they are:
the per-defense layout, the paper's, is still what `study-server import` makes. The
interleaved study is a new study of the same experiment, laid out from their stimuli:

- its stimuli are copies of theirs (the images and every manifest field), keyed
  `<defense>/<stimulus id>` and with `stimuli.defense` set, so the export gives each label
  its defense and the analysis sees one annotator's labels under every defense
  (within-subject comparisons);
- its assignments come from `split.interleave` (a Latin square over blocks of source digits:
  nobody sees two versions of one digit, every defense equally represented in each
  assignment, reproducible from the seed), times `labels_per_image` replicas;
- it joins the experiment, so a person who took part in one of the per-defense studies is
  refused it, and the other way round (allocation rule 8): the promise "nobody sees two
  versions of a digit" holds across the studies of the experiment too;
- the markets publish it like any study (one HIT, or Prolific place, per assignment).

Source digits that are not in every defense's study (an attack that produced no stimulus
there) are left out of the layout and counted; catch trials of the same digit in several
bundles are one catch trial (the clean image of a digit is the same whatever the defense;
the first study's, by defense, is kept). The study is recognised again by a digest of its
members' manifests and its layout options: running the command again changes nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from study_server import experiments
from study_server.db.models import Event, Stimulus, StimulusKind, Study
from study_server.db.session import begin_write
from study_server.errors import ImportRefused
from study_server.importer import (
    STIMULUS_FIELDS,
    Protocol,
    add_assignments,
    check_labels_per_image,
    start_protocol,
)
from study_server.slug import SLUG_RULE, is_slug
from study_server.split import interleave, replicate

# `studies.defense` of an interleaved study: its stimuli carry their own (`stimuli.defense`).
INTERLEAVED = "interleaved"
# What a stimulus of the interleaved study copies from the member study's row.
_COPIED = (*STIMULUS_FIELDS, "image_png")


@dataclass(frozen=True)
class LayoutResult:
    slug: str
    created: bool
    experiment: str
    defenses: tuple[str, ...]
    stimuli: int
    assignments: int
    labels_per_image: int
    digits: int = 0
    left_out: dict[str, int] = field(default_factory=dict)
    catch_duplicates: int = 0
    catch_left_out: int = 0


def layout_digest(members: list[Study], *, seed: int, items: int, labels_per_image: int) -> str:
    """What names an interleaved study: its members' manifests and the layout's options."""
    parts = sorted(study.manifest_sha256 for study in members)
    text = "|".join(["advcritic-interleaved", *parts, str(seed), str(items), str(labels_per_image)])
    return hashlib.sha256(text.encode()).hexdigest()


def lay_out(
    session: Session,
    *,
    experiment: str,
    seed: int,
    items_per_assignment: int,
    labels_per_image: int = 1,
    slug: str | None = None,
    protocol: Protocol | None = None,
) -> LayoutResult:
    """Make (or find) the interleaved study of `experiment`, in one transaction."""
    check_labels_per_image(labels_per_image)
    if items_per_assignment < 1:
        raise ImportRefused(
            f"--items-per-assignment must be at least 1, got {items_per_assignment}"
        )
    slug = slug or f"{experiment}-interleaved"
    if not is_slug(slug):
        raise ImportRefused(f"study slug {slug!r} must be {SLUG_RULE}")
    begin_write(session)
    try:
        result = _lay_out(
            session,
            experiment=experiment,
            seed=seed,
            items=items_per_assignment,
            labels_per_image=labels_per_image,
            slug=slug,
            protocol=protocol or Protocol(),
        )
    except BaseException:
        session.rollback()
        raise
    if result.created:
        session.commit()
    else:
        session.rollback()
    return result


def _members(session: Session, group_id: int, experiment: str) -> list[Study]:
    members = [
        study
        for study in experiments.experiment_studies(session, group_id)
        if study.defense != INTERLEAVED
    ]
    defenses = [study.defense for study in members]
    if len(set(defenses)) < 2:
        raise ImportRefused(
            f"experiment {experiment!r} has studies of {len(set(defenses))} defense(s); an "
            "interleaved layout mixes at least two (import their bundles with --experiment)"
        )
    twice = sorted({d for d in defenses if defenses.count(d) > 1})
    if twice:
        raise ImportRefused(
            f"experiment {experiment!r} has several studies of defense {', '.join(twice)}; "
            "an interleaved layout takes one study per defense"
        )
    for name in ("network", "dataset", "num_classes", "class_names"):
        values = {str(getattr(study, name)) for study in members}
        if len(values) > 1:
            raise ImportRefused(
                f"the studies of experiment {experiment!r} differ in {name} "
                f"({', '.join(sorted(values))}); an interleaved study compares defenses on "
                "one network and dataset"
            )
    return sorted(members, key=lambda study: study.defense)


def _lay_out(
    session: Session,
    *,
    experiment: str,
    seed: int,
    items: int,
    labels_per_image: int,
    slug: str,
    protocol: Protocol,
) -> LayoutResult:
    group = experiments.find_experiment(session, experiment, list_known=True)
    members = _members(session, group.id, experiment)
    digest = layout_digest(members, seed=seed, items=items, labels_per_image=labels_per_image)
    defenses = tuple(study.defense for study in members)
    found = session.scalar(select(Study).where(Study.manifest_sha256 == digest))
    if found is not None:
        if found.slug != slug:
            raise ImportRefused(f"this layout exists already as study {found.slug!r}")
        return LayoutResult(
            slug,
            False,
            experiment,
            defenses,
            len(found.stimuli),
            len(found.assignments),
            found.labels_per_image,
        )
    if session.scalar(select(Study.id).where(Study.slug == slug)) is not None:
        raise ImportRefused(f"study slug {slug!r} is taken; choose one with --slug")
    rows = session.execute(
        select(
            Stimulus.id, Stimulus.stimulus_key, Stimulus.kind, Stimulus.source_index, Study.defense
        )
        .join(Study, Study.id == Stimulus.study_id)
        .where(Stimulus.study_id.in_([study.id for study in members]))
    ).all()
    adversarial: dict[str, list[tuple[str, int]]] = {d: [] for d in defenses}
    catch: list[tuple[str, int]] = []
    source_of: dict[str, int] = {}
    for stimulus_id, key, kind, digit, defense in rows:
        new_key = f"{defense}/{key}"
        source_of[new_key] = stimulus_id
        (adversarial[defense] if kind == StimulusKind.adversarial else catch).append(
            (new_key, digit)
        )
    try:
        layout = interleave(adversarial, catch, items_per_assignment=items, seed=seed)
    except ValueError as error:
        raise ImportRefused(f"experiment {experiment!r}: {error}") from error
    first = members[0]
    study = Study(
        slug=slug,
        defense=INTERLEAVED,
        network=first.network,
        dataset=first.dataset,
        seed=seed,
        bundle_version=max(study.bundle_version for study in members),
        manifest_sha256=digest,
        checkpoint_sha256=hashlib.sha256(
            "|".join(sorted(study.checkpoint_sha256 for study in members)).encode()
        ).hexdigest(),
        num_classes=first.num_classes,
        class_names=list(first.class_names),
        attack={
            "interleaved": {
                study.defense: {"study": study.slug, "attack": study.attack} for study in members
            }
        },
        items_per_assignment=items,
        split_seed=seed,
        labels_per_image=labels_per_image,
    )
    session.add(study)
    session.flush()
    start_protocol(session, study_id=study.id, protocol=protocol)
    experiments.join(session, group, [slug])
    used = [key for assignment in layout.assignments for key in assignment]
    originals = {
        row.id: row
        for row in session.scalars(
            select(Stimulus).where(Stimulus.id.in_([source_of[key] for key in used]))
        )
    }
    copies = []
    for key in used:
        original = originals[source_of[key]]
        defense = key.split("/", 1)[0]
        copies.append(
            {
                "study_id": study.id,
                "stimulus_key": key,
                "defense": defense,
                **{name: getattr(original, name) for name in _COPIED},
            }
        )
    stimulus_ids = dict(
        session.execute(
            insert(Stimulus).returning(
                Stimulus.stimulus_key, Stimulus.id, sort_by_parameter_order=True
            ),
            copies,
        ).all()
    )
    layouts = replicate(layout.assignments, replicas=labels_per_image, seed=seed)
    count = add_assignments(session, study_id=study.id, layouts=layouts, stimulus_ids=stimulus_ids)
    session.add(
        Event(
            study_id=study.id,
            kind="study_laid_out_interleaved",
            detail={
                "experiment": experiment,
                "studies": [member.slug for member in members],
                "seed": seed,
                "items_per_assignment": items,
                "labels_per_image": labels_per_image,
                "stimuli": len(copies),
                "assignments": count,
                "digits": layout.digits,
                "left_out": layout.left_out,
                "catch_duplicates": layout.catch_duplicates,
                "catch_left_out": layout.catch_left_out,
            },
        )
    )
    return LayoutResult(
        slug,
        True,
        experiment,
        defenses,
        len(copies),
        count,
        labels_per_image,
        digits=layout.digits,
        left_out=layout.left_out,
        catch_duplicates=layout.catch_duplicates,
        catch_left_out=layout.catch_left_out,
    )
