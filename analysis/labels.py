"""Where `analyze-study` gets its labels: the study database, or files exported from it.

Both roads give the same rows, because the database road goes through the server's own
export (`study_server.export.label_rows`): one row per stored label with the stimulus
(kind, original label, attack target), the worker and the state of the submission. Which
rows count is decided later, in one place (`table2.counted`), for both.

An interleaved study (study_server/interleaved.py: one study whose assignments mix several
defenses, each stimulus with its own defense in the export's `defense` column) is read as one
part per defense, each a `StudyLabels` with the study's slug and that defense, holding the
adversarial labels of that defense and every catch trial of the study (catch trials measure
the annotators, who label every defense there). The same person then appears under every
defense, and the comparisons are within-subject (clustered.compare_shares).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from study_server.db.access import study_sessions
from study_server.db.models import Stimulus, StimulusKind, Study
from study_server.export import label_rows, study_markets

# Worker sources that are recruitment markets (their submissions are confirmed by a sync).
MARKET_SOURCES = ("mturk", "prolific")


class AnalysisError(ValueError):
    """Input the analysis cannot work with: no such study, no usable labels, a broken export."""


@dataclass(frozen=True)
class StudyInfo:
    slug: str
    defense: str
    network: str
    dataset: str
    class_names: tuple[str, ...] | None
    # Markets the study has HITs on ("mturk"): then its labels are that market's by default.
    markets: tuple[str, ...] = ()
    # The experiment the study belongs to (`analyze-study --experiment`), None if none.
    experiment: str | None = None


@dataclass(frozen=True)
class LabelRow:
    study: str
    assignment: int
    kind: str  # "adversarial" | "catch"
    original_label: int
    target: int | None
    label: int
    worker_source: str  # "mturk" | "prolific" | "local"
    worker_id: str
    allocation_status: str
    verification: str  # "confirmed" | "flagged" | "unverified" | "not_applicable"
    # What the stimulus was, for per-image consensus and the psychometric view. Optional so
    # that exports written before a column existed still read (None: not known).
    stimulus_id: str | None = None
    rho: float | None = None
    confidence_original: float | None = None
    confidence_adversarial: float | None = None
    # The submission's attention outcome ("passed", "failed_attention", "not_applicable";
    # None: never judged, or an export from before the protocol) and its numbers.
    attention: str | None = None
    attention_note: str | None = None

    @property
    def annotator(self) -> tuple[str, str]:
        """Who gave the label: the unit whose labels are not independent of each other."""
        return self.worker_source, self.worker_id

    @property
    def image(self) -> tuple[str, str] | None:
        """Which image was labeled (a study's stimulus), or None when the export lacks it."""
        return None if self.stimulus_id is None else (self.study, self.stimulus_id)


@dataclass(frozen=True)
class StudyLabels:
    info: StudyInfo
    rows: tuple[LabelRow, ...]


_REQUIRED = (
    "study",
    "defense",
    "network",
    "assignment",
    "kind",
    "original_label",
    "target",
    "label",
    "worker_source",
    "worker_id",
    "allocation_status",
    "verification",
)


def _optional_float(raw: dict[str, Any], name: str) -> float | None:
    value = raw.get(name)
    return None if value in (None, "") else float(value)


def _optional_text(raw: dict[str, Any], name: str) -> str | None:
    value = raw.get(name)
    return None if value in (None, "") else str(value)


def _row(raw: dict[str, Any], where: str) -> LabelRow:
    missing = [name for name in _REQUIRED if name not in raw]
    if missing:
        raise AnalysisError(
            f"{where}: missing column(s) {', '.join(missing)}; is this an export of `study-server`?"
        )
    try:
        target = raw["target"]
        return LabelRow(
            study=str(raw["study"]),
            assignment=int(raw["assignment"]),
            kind=str(raw["kind"]),
            original_label=int(raw["original_label"]),
            target=None if target in (None, "") else int(target),
            label=int(raw["label"]),
            worker_source=str(raw["worker_source"]),
            worker_id=str(raw["worker_id"]),
            allocation_status=str(raw["allocation_status"]),
            verification=str(raw["verification"]),
            stimulus_id=_optional_text(raw, "stimulus_id"),
            rho=_optional_float(raw, "rho"),
            confidence_original=_optional_float(raw, "confidence_original"),
            confidence_adversarial=_optional_float(raw, "confidence_adversarial"),
            attention=_optional_text(raw, "attention"),
            attention_note=_optional_text(raw, "attention_note"),
        )
    except (TypeError, ValueError) as error:
        raise AnalysisError(f"{where}: {error}") from error


def _info_from(
    raw: dict[str, Any],
    class_names: Sequence[str] | None = None,
    markets: Sequence[str] = (),
) -> StudyInfo:
    return StudyInfo(
        slug=str(raw.get("slug") or raw.get("study")),
        defense=str(raw["defense"]),
        network=str(raw["network"]),
        dataset=str(raw.get("dataset", "")),
        class_names=tuple(class_names) if class_names else None,
        markets=tuple(markets),
        experiment=_optional_text(raw, "experiment"),
    )


def read_export(path: str | Path) -> list[StudyLabels]:
    """Labels from a `study-server` export (CSV or JSON), grouped by study."""
    file = Path(path)
    if not file.is_file():
        raise AnalysisError(f"export file not found: {file}")
    text = file.read_text(encoding="utf-8")
    if file.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        try:
            document = json.loads(text)
        except ValueError as error:
            raise AnalysisError(f"{file}: not valid JSON ({error})") from error
        if (
            not isinstance(document, dict)
            or not isinstance(document.get("study"), dict)
            or not isinstance(document.get("labels"), list)
        ):
            raise AnalysisError(
                f"{file}: expected {{'study': {{...}}, 'labels': [...]}} "
                "as `study-server` exports it"
            )
        meta = document["study"]
        pairs = [
            (str(raw.get("defense") or meta.get("defense")), _row(raw, f"{file} label {n}"))
            for n, raw in enumerate(document["labels"], start=1)
        ]
        info = _info_from(meta, meta.get("class_names"), meta.get("markets") or ())
        return by_defense(info, pairs)
    studies: dict[str, list[tuple[str, LabelRow]]] = {}
    infos: dict[str, StudyInfo] = {}
    for n, raw in enumerate(csv.DictReader(text.splitlines()), start=2):
        row = _row(raw, f"{file} line {n}")
        studies.setdefault(row.study, []).append((str(raw["defense"]), row))
        infos.setdefault(row.study, _info_from(raw))
    if not studies:
        raise AnalysisError(f"{file}: the export holds no labels")
    # A CSV export names no markets: a study with a market's labels in it was published there.
    return [
        part
        for slug, group in studies.items()
        for part in by_defense(
            replace(
                infos[slug],
                markets=tuple(
                    m for m in MARKET_SOURCES if any(r.worker_source == m for _, r in group)
                ),
            ),
            group,
        )
    ]


def by_defense(
    info: StudyInfo, pairs: Sequence[tuple[str, LabelRow]], defenses: Sequence[str] = ()
) -> list[StudyLabels]:
    """A study's labels (each with the defense its export row names) as one `StudyLabels`
    per defense of its adversarial stimuli: one for a study of one bundle, one per defense
    for an interleaved study, each with every catch trial. `defenses`: those to make parts
    of (default: those the adversarial labels have)."""
    found = sorted({defense for defense, row in pairs if row.kind != "catch"})
    wanted = list(defenses) or found
    if len(wanted) <= 1 and len(found) <= 1:
        defense = wanted[0] if wanted else info.defense
        return [StudyLabels(replace(info, defense=defense), tuple(row for _, row in pairs))]
    return [
        StudyLabels(
            replace(info, defense=defense),
            tuple(row for d, row in pairs if row.kind == "catch" or d == defense),
        )
        for defense in wanted
    ]


def read_database(
    url: str, choose: Callable[[list[StudyInfo]], list[StudyInfo]]
) -> list[StudyLabels]:
    """Labels of the studies `choose` picks among those in the study database."""
    with study_sessions(url) as sessions, sessions() as session:
        return load_studies(session, choose)


def load_studies(
    session: Session, choose: Callable[[list[StudyInfo]], list[StudyInfo]]
) -> list[StudyLabels]:
    """`read_database` on an open session (the dashboard reads with the server's).
    `choose` sees one `StudyInfo` per study and, for an interleaved study, per defense."""
    infos = []
    for study in session.scalars(select(Study).order_by(Study.slug)):
        info = StudyInfo(
            study.slug,
            study.defense,
            study.network,
            study.dataset,
            tuple(study.class_names),
            tuple(study_markets(session, study)),
            experiment=study.experiment.slug if study.experiment else None,
        )
        own = session.scalars(
            select(Stimulus.defense)
            .where(
                Stimulus.study_id == study.id,
                Stimulus.kind == StimulusKind.adversarial,
                Stimulus.defense.is_not(None),
            )
            .distinct()
            .order_by(Stimulus.defense)
        ).all()
        infos += [replace(info, defense=defense) for defense in own] if own else [info]
    found = []
    read: dict[str, list[tuple[str, LabelRow]]] = {}
    for info in choose(infos):
        if info.slug not in read:
            _, rows = label_rows(session=session, study_slug=info.slug)
            read[info.slug] = [
                (str(raw["defense"]), _row(raw, f"study {info.slug}")) for raw in rows
            ]
        found += by_defense(info, read[info.slug], [info.defense])
    return found
