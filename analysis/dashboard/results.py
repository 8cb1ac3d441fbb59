"""The dashboard's expensive part: Table 2 with its annotator-bootstrap intervals, the
psychometric plot and catch accuracy per annotator, computed by the analysis' own functions
(the same numbers `analyze-study` prints, seed 0) and kept in a small cache.

`ResultCache` recomputes a page's results only when what the analysis reads has changed
(labels stored, a market's sync) and then at most once per `ttl_s` seconds, so refreshing a
busy study every few seconds costs cheap queries, not bootstraps; concurrent refreshes of one
page wait for one computation instead of starting their own.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory

from sqlalchemy.orm import Session, sessionmaker

from analysis.clustered import RESAMPLES, ClusteredShare
from analysis.labels import AnalysisError, LabelRow, StudyLabels, load_studies
from analysis.report import FEW_ANNOTATORS, SYNTHETIC_DATASET, counted_text
from analysis.stats import Share
from analysis.table2 import Comparison, DefenseResult, Table2, compute_table2
from contract.names import DEFENSE_TITLES, NETWORK_TITLES

_PLOTTING = threading.Lock()  # matplotlib's pyplot keeps global state: one figure at a time


def _bootstrap(share: ClusteredShare | None) -> str:
    if share is None:
        return "- (1 annotator)"
    low, high = share.interval_percent
    return f"{100 * share.fraction:.2f} [{low:.2f}, {high:.2f}]"


def _wilson(share: Share) -> str:
    low, high = share.interval_percent
    return f"[{low:.2f}, {high:.2f}]"


@dataclass(frozen=True)
class Table2Line:
    """One row of Table 2 as the panel prints it (percent, 95% intervals)."""

    key: str  # network-defense, e.g. fc-ours
    network: str
    defense: str
    studies: str
    images: int
    annotators: int
    change: str  # % with the annotator-bootstrap interval
    change_wilson: str
    paper_change: str
    no_change: str
    no_change_wilson: str
    paper_no_change: str
    other: str
    design_effect: str
    catch: str
    few_annotators: bool

    @classmethod
    def of(cls, result: DefenseResult) -> Table2Line:
        o, paper = result.outcomes, result.paper
        change = result.clustered.get("change")
        catch = result.catch_accuracy
        return cls(
            key=f"{result.network}-{result.defense}",
            network=NETWORK_TITLES.get(result.network, result.network),
            defense=DEFENSE_TITLES.get(result.defense, result.defense),
            studies=", ".join(result.studies),
            images=o.change.total,
            annotators=result.annotators,
            change=_bootstrap(change),
            change_wilson=_wilson(o.change),
            paper_change="-" if paper is None else f"{paper.change_pct:.2f}",
            no_change=_bootstrap(result.clustered.get("no_change")),
            no_change_wilson=_wilson(o.no_change),
            paper_no_change="-" if paper is None else f"{paper.no_change_pct:.2f}",
            other=f"{o.other.percent:.2f}",
            design_effect="-"
            if change is None or change.design_effect is None
            else f"{change.design_effect:.2f}",
            catch="-"
            if catch is None
            else f"{catch.percent:.1f} {_wilson(catch)} (n={catch.total})",
            few_annotators=result.annotators < FEW_ANNOTATORS,
        )


@dataclass(frozen=True)
class ComparisonLine:
    network: str
    baseline: str
    outcome: str
    difference: str
    p: str
    p_holm: str
    design: str

    @classmethod
    def of(cls, comparison: Comparison) -> ComparisonLine:
        d = comparison.difference

        def p(value: float) -> str:
            return "< 0.001" if value < 0.001 else f"{value:.3f}"

        return cls(
            NETWORK_TITLES.get(comparison.network, comparison.network),
            DEFENSE_TITLES.get(comparison.baseline, comparison.baseline),
            comparison.outcome.replace("_", " "),
            f"{100 * d.estimate:+.2f} [{100 * d.low:+.2f}, {100 * d.high:+.2f}]",
            p(d.p_value),
            p(comparison.p_holm),
            d.design,
        )


@dataclass(frozen=True)
class AnnotatorCatch:
    """One person's catch trials in one study, whatever their submission's state."""

    study: str
    source: str
    worker: str
    verification: str
    correct: int
    total: int
    labels: int  # adversarial labels they gave

    @property
    def percent(self) -> float:
        return 100.0 * self.correct / self.total


def catch_by_annotator(studies: Sequence[StudyLabels]) -> list[AnnotatorCatch]:
    """Everyone who submitted a study with catch trials, lowest accuracy first."""
    people: dict[tuple[str, str, str], list[LabelRow]] = {}
    for study in studies:
        for row in study.rows:
            if row.allocation_status == "submitted":
                people.setdefault((row.study, *row.annotator), []).append(row)
    found = []
    for (slug, source, worker), rows in people.items():
        catch = [r for r in rows if r.kind == "catch"]
        if catch:
            found.append(
                AnnotatorCatch(
                    study=slug,
                    source=source,
                    worker=worker,
                    verification=rows[0].verification,
                    correct=sum(1 for r in catch if r.label == r.original_label),
                    total=len(catch),
                    labels=len(rows) - len(catch),
                )
            )
    return sorted(found, key=lambda a: (a.percent, a.study, a.worker))


@dataclass(frozen=True)
class Results:
    """What the expensive panels show, for one page's studies at one moment."""

    fingerprint: Hashable
    computed_at: datetime
    seconds: float
    lines: list[Table2Line] = field(default_factory=list)
    comparisons: list[ComparisonLine] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    counted: str = ""
    problem: str | None = None  # why there is no Table 2 yet
    synthetic: bool = False
    annotators: list[AnnotatorCatch] = field(default_factory=list)
    psychometric_png: bytes | None = None


def psychometric_png(table: Table2) -> bytes | None:
    """The rho figure of analysis/plot.py as PNG bytes (None when no label has a rho)."""
    from analysis.plot import plot_psychometric

    with _PLOTTING, TemporaryDirectory(prefix="dashboard-") as folder:
        path = plot_psychometric(table, "rho", Path(folder) / "psychometric_rho.png")
        return None if path is None else path.read_bytes()


def compute_results(
    sessions: sessionmaker[Session],
    slugs: Sequence[str],
    fingerprint: Hashable,
    *,
    resamples: int = RESAMPLES,
) -> Results:
    """Table 2 (`--source auto`, as `analyze-study` counts), the figure, catch per annotator."""
    started = time.perf_counter()
    with sessions() as session:
        wanted = set(slugs)
        studies = load_studies(session, lambda infos: [i for i in infos if i.slug in wanted])
    annotators = catch_by_annotator(studies)
    synthetic = any(s.info.dataset == SYNTHETIC_DATASET for s in studies)
    try:
        table = compute_table2(studies, source="auto", skip_empty=True, resamples=resamples)
    except AnalysisError as error:
        return Results(
            fingerprint,
            datetime.now(UTC),
            time.perf_counter() - started,
            problem=str(error),
            synthetic=synthetic,
            annotators=annotators,
        )
    return Results(
        fingerprint,
        datetime.now(UTC),
        time.perf_counter() - started,
        lines=[Table2Line.of(result) for result in table.results],
        comparisons=[ComparisonLine.of(c) for c in table.comparisons],
        skipped=dict(table.skipped),
        counted=counted_text(table),
        synthetic=synthetic,
        annotators=annotators,
        psychometric_png=psychometric_png(table),
    )


@dataclass
class _Entry:
    results: Results
    stamp: float  # the clock when computed


class ResultCache:
    """Results per page (its studies), recomputed when the data changed, at most every ttl_s."""

    def __init__(
        self,
        *,
        ttl_s: float = 60.0,
        max_entries: int = 32,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.clock = clock
        self.computations = 0
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._locks: dict[Hashable, threading.Lock] = {}
        self._guard = threading.Lock()

    def _fresh(self, key: Hashable, fingerprint: Hashable) -> Results | None:
        with self._guard:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if (
                entry.results.fingerprint != fingerprint
                and self.clock() - entry.stamp >= self.ttl_s
            ):
                return None
            self._entries.move_to_end(key)
            return entry.results

    def get(self, key: Hashable, fingerprint: Hashable, compute: Callable[[], Results]) -> Results:
        """The cached results of `key`, or `compute()`'s when stale (one computation at once)."""
        found = self._fresh(key, fingerprint)
        if found is not None:
            return found
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            found = self._fresh(key, fingerprint)  # another request may have just computed it
            if found is not None:
                return found
            results = compute()
            with self._guard:
                self.computations += 1
                self._entries[key] = _Entry(results, self.clock())
                self._entries.move_to_end(key)
                while len(self._entries) > self.max_entries:
                    old, _ = self._entries.popitem(last=False)
                    self._locks.pop(old, None)
            return results

    def peek(self, key: Hashable) -> Results | None:
        """The last results of `key`, however old (None: never computed, or evicted)."""
        with self._guard:
            entry = self._entries.get(key)
            return None if entry is None else entry.results
