"""Table 2: how people label adversarial images, per defense and network.

For each adversarial image an annotator labeled:

- "change": the label is the attack's target (the noise made the image show the new class);
- "no change": the label is the image's original (true) class;
- "other": anything else.

Which labels count (`exclusion_reason`), decided here once for the database and for exports:

- only submitted assignments (the server stores labels at submission, so this is a guard);
- not adversarial images whose target is their true class: the model misclassified the
  original and the attack led it back, so "change" and "no change" would be the same label;
- market work (MTurk, Prolific) only when the market's sync confirmed it: `mturk sync` finds
  that assignment for that worker on one of the study's HITs, `prolific sync` finds that
  submission (the participant's session) for that participant, completed, in the study's
  submissions on Prolific. Unverified (not yet synced) and flagged (the market does not
  confirm it, or the researcher rejected it) labels are left out and counted in the report's
  exclusions;
- lab labels count only when made with an invitation code (`invited`, from `study-server
  invite`): the code is the lab's credential, in place of a market's confirmation. Lab labels
  from before invitations (`not_applicable`: any code a visitor typed) never count.
- whose labels by default (`--source auto`): a study published on a market counts that
  market's confirmed submissions only, and its lab labels only with `--source all` or
  `local`; a study on no market counts its invited lab labels. The report says which it did,
  and always shows labels per source;
- not submissions that failed the study's attention policy (`failed_attention`, judged when
  they were stored, study_server/attention.py): each is listed with its numbers, and
  `--include-failed-attention` counts them anyway, to show what the exclusion changes.
  Submissions never judged (stored before the protocol existed) count.

Several studies of the same defense and network (e.g. seeds) are pooled into one row, and
the row lists them.

Beside the paper's figures each row carries what a reader needs to judge them
(docs/analysis.md): intervals that treat an annotator's labels as one correlated cluster
(clustered.py), per-image consensus and agreement when images have several labels
(agreement.py), and the shares as functions of rho and of the model's confidence
(psychometric.py). The table also compares ours with each baseline on the same network.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from analysis.agreement import Consensus, consensus, outcome_code
from analysis.clustered import (
    RESAMPLES,
    ClusteredShare,
    Difference,
    cluster_sums,
    clustered_share,
    compare_shares,
)
from analysis.labels import AnalysisError, LabelRow, StudyInfo, StudyLabels
from analysis.psychometric import Curve, curves
from analysis.stats import Share
from contract.names import DEFENSES, NETWORKS, canonical_network
from contract.paper import Table2Row, paper_table2

# The markets whose work counts once their sync confirmed it: worker source -> name, command.
MARKETS = {"mturk": ("MTurk", "mturk"), "prolific": ("Prolific", "prolific")}
SOURCES = ("auto", "all", *MARKETS, "local")
OUTCOMES = ("change", "no_change", "other")
OURS = "ours"
FAILED_ATTENTION = "failed_attention"
FAILED_ATTENTION_REASON = "from submissions that failed the study's attention policy (listed below)"


def effective_source(source: str, info: StudyInfo) -> str:
    """`auto`: the labels of the market the study was published on, else the lab's."""
    if source != "auto":
        return source
    return next((market for market in MARKETS if market in info.markets), "local")


def exclusion_reason(
    row: LabelRow, source: str = "all", *, include_failed_attention: bool = False
) -> str | None:
    """Why a label does not count, or None when it does."""
    reason = _reason_before_attention(row, source)
    if reason is None and row.attention == FAILED_ATTENTION and not include_failed_attention:
        return FAILED_ATTENTION_REASON
    return reason


def _reason_before_attention(row: LabelRow, source: str) -> str | None:
    """Why the label does not count, the attention policy aside."""
    if row.allocation_status != "submitted":
        return f"assignment {row.allocation_status}, not submitted"
    if row.target is not None and row.target == row.original_label:
        # The model misclassified the original and the attack led it back to the true class:
        # not an adversarial mistake, and "change" would equal "no change".
        return "attack target is the true class (original misclassified)"
    if row.worker_source == "local":
        if source in MARKETS:
            return f"lab (local-mode) label, left out by --source {source} (add --source all)"
        if row.verification == "invited":
            return None
        if row.verification == "not_applicable":
            return "lab label from a code nobody was invited with (before invitations)"
        return f"lab label with verification {row.verification}"
    market, command = MARKETS.get(row.worker_source, (row.worker_source, row.worker_source))
    if source not in ("all", row.worker_source):
        return f"{market} label, left out by --source {source}"
    if row.verification == "confirmed":
        return None
    if row.verification == "unverified":
        return f"{market} submission not yet confirmed (run `{command} sync`)"
    if row.verification == "flagged":
        return f"{market} submission flagged (not confirmed by {market}, or rejected)"
    return f"{market} submission with verification {row.verification}"


@dataclass(frozen=True)
class Outcomes:
    """Change / no change / other among a set of adversarial labels."""

    change: Share
    no_change: Share
    other: Share

    @classmethod
    def of(cls, rows: list[LabelRow]) -> Outcomes:
        total = len(rows)
        change = sum(1 for r in rows if r.label == r.target)
        no_change = sum(1 for r in rows if r.label == r.original_label)
        return cls(
            Share(change, total), Share(no_change, total), Share(total - change - no_change, total)
        )


@dataclass(frozen=True)
class AttentionFailure:
    """A submission the attention policy failed, otherwise counted: left out (or, with
    --include-failed-attention, counted and said so)."""

    study: str
    annotator: tuple[str, str]
    assignment: int
    labels: int
    note: str

    def as_dict(self) -> dict[str, object]:
        return {
            "study": self.study,
            "worker_source": self.annotator[0],
            "worker_id": self.annotator[1],
            "assignment": self.assignment,
            "labels": self.labels,
            "why": self.note,
        }


@dataclass(frozen=True)
class ClassRow:
    original_label: int
    name: str
    outcomes: Outcomes


@dataclass
class DefenseResult:
    defense: str
    network: str
    studies: tuple[str, ...]
    datasets: tuple[str, ...]
    outcomes: Outcomes
    per_class: list[ClassRow]
    catch_accuracy: Share | None
    annotators: int
    assignments: int
    labels_by_source: dict[str, int]
    excluded: dict[str, int] = field(default_factory=dict)
    # Annotator-bootstrap intervals of change / no_change / other (None: < 2 annotators).
    clustered: dict[str, ClusteredShare | None] = field(default_factory=dict)
    consensus: Consensus | None = None  # only when some image has k > 1 labels
    curves: list[Curve] = field(default_factory=list)
    rows: tuple[LabelRow, ...] = field(default=(), repr=False)  # the counted adversarial labels
    # Whose labels were counted ("mturk", "local" or "all"), after resolving `--source auto`.
    counted_source: str = "all"
    # Submissions that failed the attention policy (left out, unless included on request).
    attention_failures: list[AttentionFailure] = field(default_factory=list)
    failed_attention_included: bool = False

    @property
    def paper(self) -> Table2Row | None:
        return paper_table2(self.network, self.defense)

    def by_annotator(self, outcome: str) -> dict[tuple[str, str], tuple[int, int]]:
        code = OUTCOMES.index(outcome)
        return cluster_sums((r.annotator, outcome_code(r) == code) for r in self.rows)


@dataclass(frozen=True)
class Comparison:
    """Ours minus a baseline on one network, in one outcome's share."""

    network: str
    defense: str
    baseline: str
    outcome: str
    difference: Difference
    p_holm: float  # Holm-adjusted over the baselines of this network and outcome

    def as_dict(self) -> dict[str, object]:
        return {
            "network": self.network,
            "defense": self.defense,
            "baseline": self.baseline,
            "outcome": self.outcome,
            **self.difference.as_dict(),
            "p_holm": self.p_holm,
        }


@dataclass
class Table2:
    results: list[DefenseResult]
    source: str
    skipped: dict[str, str] = field(default_factory=dict)  # group title -> why
    comparisons: list[Comparison] = field(default_factory=list)
    include_failed_attention: bool = False


def choose_studies(
    infos: list[StudyInfo],
    *,
    defense: str | None = None,
    network: str | None = None,
    every: bool = False,
    slugs: Iterable[str] = (),
    experiment: str | None = None,
) -> list[StudyInfo]:
    """The studies a command line asks for; a clear `AnalysisError` when none or unknown.
    `experiment` narrows to its studies (every defense of it unless `defense` is given)."""
    if experiment is not None:
        infos = [i for i in infos if i.experiment == experiment]
        if not infos:
            raise AnalysisError(f"no study of experiment {experiment!r}")
        every = every or not defense
    known = (
        ", ".join(f"{i.slug} ({i.defense}/{i.network})" for i in infos)
        or "none; import and label one first"
    )
    slugs = list(slugs)
    if slugs:
        unknown = [slug for slug in slugs if slug not in {info.slug for info in infos}]
        if unknown:
            raise AnalysisError(f"unknown study {', '.join(map(repr, unknown))} (studies: {known})")
        # An interleaved study is one info per defense: all of them.
        return [info for slug in dict.fromkeys(slugs) for info in infos if info.slug == slug]
    if not every and not defense:
        raise AnalysisError(
            "say which defense (--defense ours), which study (--study SLUG) or --all"
        )
    wanted_net = None
    if network:
        wanted_net = _network(network)
        if wanted_net is None:
            raise AnalysisError(f"unknown network {network!r}; use fc or lenet")
    chosen = [
        info
        for info in infos
        if (every or info.defense.lower() == defense.lower())  # type: ignore[union-attr]
        and (wanted_net is None or _network(info.network) == wanted_net)
    ]
    if not chosen:
        what = "any defense" if every else f"defense {defense!r}"
        raise AnalysisError(
            f"no study of {what}{f' on network {network}' if network else ''} (studies: {known})"
        )
    return chosen


def _network(name: str) -> str | None:
    try:
        return canonical_network(name)
    except ValueError:
        return None


def _group_key(info: StudyInfo) -> tuple[int, int, str, str]:
    network = _network(info.network) or info.network
    defense = info.defense.lower()
    net_rank = NETWORKS.index(network) if network in NETWORKS else len(NETWORKS)
    def_rank = DEFENSES.index(defense) if defense in DEFENSES else len(DEFENSES)
    return net_rank, def_rank, network, defense


def compute_table2(
    studies: list[StudyLabels],
    *,
    source: str = "all",
    skip_empty: bool = False,
    seed: int = 0,
    resamples: int = RESAMPLES,
    bins: int = 5,
    include_failed_attention: bool = False,
) -> Table2:
    """One result per (defense, network) among `studies`, and ours against each baseline.

    A group without counted labels is an `AnalysisError`; with `skip_empty` it is listed in
    `skipped` instead, as long as one group remains. `seed` fixes every bootstrap and
    permutation, so the same labels always give the same report; `bins` is the number of
    quantile bins of the psychometric curves.
    """
    if resamples < 99:
        raise AnalysisError(f"--resamples must be at least 99, got {resamples}")
    if not 1 <= bins <= 50:
        raise AnalysisError(f"--bins must be between 1 and 50, got {bins}")
    if source not in SOURCES:
        raise AnalysisError(f"--source must be one of {', '.join(SOURCES)}, got {source!r}")
    groups: dict[tuple[int, int, str, str], list[StudyLabels]] = {}
    for study in studies:
        groups.setdefault(_group_key(study.info), []).append(study)
    table = Table2(results=[], source=source, include_failed_attention=include_failed_attention)
    for key in sorted(groups):
        members = groups[key]
        try:
            table.results.append(
                _result(
                    key[3],
                    key[2],
                    members,
                    source,
                    seed=seed,
                    resamples=resamples,
                    bins=bins,
                    include_failed_attention=include_failed_attention,
                )
            )
        except AnalysisError as error:
            if not skip_empty:
                raise
            table.skipped[f"{key[3]}/{key[2]}"] = str(error)
    if not table.results:
        raise AnalysisError("no study has counted labels: " + "; ".join(table.skipped.values()))
    table.comparisons = compare_with_baselines(table.results, seed=seed, resamples=resamples)
    return table


def compare_with_baselines(
    results: list[DefenseResult], *, seed: int = 0, resamples: int = RESAMPLES
) -> list[Comparison]:
    """Ours - each baseline of the same network, in % change and % no change, Holm-adjusted."""
    from statsmodels.stats.multitest import multipletests

    found: list[Comparison] = []
    for network in dict.fromkeys(r.network for r in results):
        ours = next((r for r in results if r.network == network and r.defense == OURS), None)
        if ours is None:
            continue
        baselines = [r for r in results if r.network == network and r.defense != OURS]
        for outcome in ("change", "no_change"):
            made = [
                (baseline, difference)
                for baseline in baselines
                if (
                    difference := compare_shares(
                        ours.by_annotator(outcome),
                        baseline.by_annotator(outcome),
                        seed=seed,
                        resamples=resamples,
                    )
                )
                is not None
            ]
            if not made:
                continue
            adjusted = multipletests([d.p_value for _, d in made], method="holm")[1]
            found += [
                Comparison(network, OURS, baseline.defense, outcome, difference, float(p))
                for (baseline, difference), p in zip(made, adjusted, strict=True)
            ]
    return found


def _result(
    defense: str,
    network: str,
    members: list[StudyLabels],
    source: str,
    *,
    seed: int = 0,
    resamples: int = RESAMPLES,
    bins: int = 5,
    include_failed_attention: bool = False,
) -> DefenseResult:
    slugs = tuple(m.info.slug for m in members)
    sources = {m.info.slug: effective_source(source, m.info) for m in members}
    rows = [(row, sources[m.info.slug]) for m in members for row in m.rows]
    reasons = [
        exclusion_reason(row, src, include_failed_attention=include_failed_attention)
        for row, src in rows
    ]
    excluded = Counter(reason for reason in reasons if reason is not None)
    counted = [row for (row, _), reason in zip(rows, reasons, strict=True) if reason is None]
    failures = _attention_failures(rows)
    adversarial = [row for row in counted if row.kind == "adversarial" and row.target is not None]
    if not adversarial:
        detail = (
            "; ".join(f"{n} {reason}" for reason, n in excluded.most_common())
            or "no labels stored yet"
        )
        raise AnalysisError(
            f"study {', '.join(slugs)} ({defense}/{network}) has no counted adversarial labels "
            f"({detail})"
        )
    names = next((m.info.class_names for m in members if m.info.class_names), None)
    per_class = [
        ClassRow(
            label,
            names[label] if names and label < len(names) else str(label),
            Outcomes.of([r for r in adversarial if r.original_label == label]),
        )
        for label in sorted({r.original_label for r in adversarial})
    ]
    catch = [row for row in counted if row.kind == "catch"]
    codes = [outcome_code(row) for row in adversarial]
    clustered = {
        name: clustered_share(
            cluster_sums((r.annotator, c == code) for r, c in zip(adversarial, codes, strict=True)),
            seed=seed,
            resamples=resamples,
        )
        for code, name in enumerate(OUTCOMES)
    }
    return DefenseResult(
        defense=defense,
        network=network,
        studies=slugs,
        datasets=tuple(sorted({m.info.dataset for m in members if m.info.dataset})),
        outcomes=Outcomes.of(adversarial),
        per_class=per_class,
        catch_accuracy=Share(sum(1 for r in catch if r.label == r.original_label), len(catch))
        if catch
        else None,
        annotators=len({(r.worker_source, r.worker_id) for r in counted}),
        assignments=len({(r.study, r.assignment) for r in counted}),
        labels_by_source=dict(sorted(Counter(r.worker_source for r in counted).items())),
        excluded=dict(excluded.most_common()),
        clustered=clustered,
        consensus=consensus(adversarial, seed=seed),
        curves=curves(adversarial, bins=bins, seed=seed, resamples=min(resamples, 999)),
        rows=tuple(adversarial),
        counted_source="+".join(sorted(set(sources.values()))),
        attention_failures=failures,
        failed_attention_included=include_failed_attention,
    )


def _attention_failures(rows: list[tuple[LabelRow, str]]) -> list[AttentionFailure]:
    """Each submission that failed the attention policy and would otherwise count."""
    found: dict[tuple[str, tuple[str, str], int], list[LabelRow]] = {}
    for row, src in rows:
        if row.attention == FAILED_ATTENTION and _reason_before_attention(row, src) is None:
            found.setdefault((row.study, row.annotator, row.assignment), []).append(row)
    return [
        AttentionFailure(study, annotator, assignment, len(labels), labels[0].attention_note or "")
        for (study, annotator, assignment), labels in sorted(found.items())
    ]
