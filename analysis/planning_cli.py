"""`analyze-study plan` and `analyze-study simulate`: simulated annotators on real stimuli.

    analyze-study plan --bundle ours/ --bundle mm/ --change-rate 0.85 --change-rate 0.75 \\
        --assignments 100 --power 0.9 --half-width 0.03
    analyze-study plan --bundle ours/ --change-rate 0.6 --difference 0.10 --interleaved
    analyze-study simulate --bundle ours/ --bundle reference/ --change-rate 0.9 \\
        --change-rate 0.05 --assignments 40 --k 3 --interleaved --out labels.csv

`plan` says how wide the intervals will be, the power to detect the stated difference, how
many assignments the goal needs and what they cost on MTurk and on Prolific. `simulate`
writes the labels of one simulated study in the columns of a `study-server` export, so
`analyze-study --export labels.csv --all` is a dry run of the analysis with a known answer.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import numpy as np

from analysis.labels import AnalysisError
from analysis.output import decimal_option, write_output
from analysis.plan import PROLIFIC_FEE, Costs, Goal, make_plan, render_plan
from analysis.simulate import Annotators, Arm, Design, StimulusSet, export_csv, simulate_study
from contract.cli import run_command
from study_server.db.access import DatabaseNotReady
from study_server.settings import Settings


def add_annotator_options(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The options that state how simulated annotators answer (`plan`, `simulate` and
    `advcritic dry-run`); `annotators_from` reads them back."""
    people = parser.add_argument_group("simulated annotators")
    people.add_argument(
        "--change-rate",
        type=float,
        action="append",
        default=[],
        metavar="P",
        help="P(change) of a typical annotator at the reference rho; one value for every "
        "defense or one per defense, in order (required)",
    )
    people.add_argument(
        "--change-slope",
        type=float,
        default=0.0,
        help="how P(change) rises with rho: logit units per unit of rho (default 0: flat)",
    )
    people.add_argument(
        "--reference-rho", type=float, help="rho at which the change rate holds (default: median)"
    )
    people.add_argument(
        "--other-rate",
        type=float,
        default=0.05,
        help="share of non-change answers that are a third class (default 0.05)",
    )
    people.add_argument(
        "--annotator-sd",
        type=float,
        default=1.0,
        help="SD of people's change propensity, logit scale (default 1.0; 0: all alike)",
    )
    people.add_argument(
        "--image-sd",
        type=float,
        default=1.0,
        help="SD of how convincing images are at equal rho, logit scale (default 1.0)",
    )
    people.add_argument(
        "--lapse-rate", type=float, default=0.02, help="random answers (default 0.02)"
    )
    people.add_argument(
        "--catch-accuracy", type=float, default=0.97, help="on catch trials (default 0.97)"
    )
    return people


def change_rates(given: Sequence[float], defenses: int) -> list[float]:
    """--change-rate once for every defense, or once per defense, in order."""
    if not given:
        raise AnalysisError("give --change-rate P (one for all defenses, or one per defense)")
    rates = list(given)
    if len(rates) == 1:
        rates = rates * defenses
    if len(rates) != defenses:
        raise AnalysisError(
            f"--change-rate given {len(rates)} times for {defenses} defenses; "
            "give it once, or once per defense"
        )
    return rates


def annotators_from(args: argparse.Namespace, change_rate: float) -> Annotators:
    """The annotators `add_annotator_options` describes, at `change_rate`."""
    return Annotators(
        change_rate=change_rate,
        change_slope=args.change_slope,
        reference_rho=args.reference_rho,
        other_rate=args.other_rate,
        annotator_sd=args.annotator_sd,
        image_sd=args.image_sd,
        lapse_rate=args.lapse_rate,
        catch_accuracy=args.catch_accuracy,
    )


def _common(parser: argparse.ArgumentParser, settings: Settings) -> None:
    stimuli = parser.add_argument_group("stimuli (one defense each, in order)")
    stimuli.add_argument(
        "--bundle", action="append", default=[], metavar="DIR", help="a stimulus bundle"
    )
    stimuli.add_argument(
        "--study",
        action="append",
        default=[],
        metavar="SLUG",
        help="an imported study's stimuli, from --database-url",
    )
    stimuli.add_argument("--database-url", default=settings.database_url)
    people = add_annotator_options(parser)
    people.add_argument(
        "--difference",
        type=float,
        metavar="D",
        help="add D to the first defense's change rate (with one bundle: compare the "
        "bundle at rate + D with itself at rate)",
    )
    design = parser.add_argument_group("design")
    design.add_argument(
        "--assignments",
        type=int,
        default=400,
        help="assignments per defense (default 400, the paper's)",
    )
    design.add_argument(
        "--items",
        type=int,
        default=settings.items_per_assignment,
        help="adversarial images per assignment (default %(default)s)",
    )
    design.add_argument("--k", type=int, default=1, help="labels per image (default 1)")
    design.add_argument(
        "--interleaved",
        action="store_true",
        help="every assignment mixes the defenses (the same people see all of them)",
    )
    parser.add_argument("--seed", type=int, default=0)


def build_plan_parser(settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="analyze-study plan",
        description="Before paying: interval width, power, the assignments a goal needs and "
        "their cost, from simulated annotators on the real stimuli.",
    )
    _common(parser, settings)
    goal = parser.add_argument_group("goal")
    goal.add_argument("--power", type=float, default=0.8, help="default 0.8")
    goal.add_argument("--alpha", type=float, default=0.05, help="default 0.05 (two-sided)")
    goal.add_argument(
        "--half-width",
        type=float,
        metavar="H",
        help="wanted 95%% half-width of each defense's %% change, as a fraction (0.03 = 3 pp)",
    )
    goal.add_argument(
        "--replicates", type=int, default=1000, help="simulated studies per design (default 1000)"
    )
    cost = parser.add_argument_group("cost per assignment")
    mturk = settings.mturk
    cost.add_argument(
        "--mturk-reward",
        type=decimal_option("--mturk-reward"),
        default=mturk.reward_usd,
        help="USD (default: settings, ADVCRITIC_MTURK_REWARD_USD: %(default)s)",
    )
    cost.add_argument(
        "--mturk-fee",
        type=decimal_option("--mturk-fee"),
        default=mturk.fee_fraction,
        help="MTurk's commission as a fraction (default: settings, %(default)s)",
    )
    cost.add_argument(
        "--prolific-reward",
        type=decimal_option("--prolific-reward"),
        help="per assignment (default: the MTurk reward)",
    )
    cost.add_argument(
        "--prolific-fee",
        type=decimal_option("--prolific-fee"),
        default=PROLIFIC_FEE,
        help="Prolific's service fee as a fraction (default %(default)s; check the current rate)",
    )
    parser.add_argument("--format", choices=("markdown", "json"), default="markdown")
    parser.add_argument("--out", help="write the plan to this file")
    return parser


def build_simulate_parser(settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="analyze-study simulate",
        description="Labels of simulated annotators, as a `study-server` CSV export "
        "(a dry run of the analysis with a known answer).",
    )
    _common(parser, settings)
    parser.add_argument(
        "--catch-per-assignment", type=int, default=0, help="catch trials per assignment"
    )
    parser.add_argument("--out", required=True, help="the CSV file to write")
    return parser


def _stimuli_from_database(url: str, slug: str) -> StimulusSet:
    from sqlalchemy import select

    from study_server.db.access import study_sessions
    from study_server.db.models import Stimulus, StimulusKind, Study

    with study_sessions(url) as sessions, sessions() as session:
        study = session.scalar(select(Study).where(Study.slug == slug))
        if study is None:
            raise AnalysisError(f"--study {slug!r}: no such study in {url}")
        rows = list(session.scalars(select(Stimulus).where(Stimulus.study_id == study.id)))
        mixed = sorted({s.defense for s in rows if s.defense is not None})
        if mixed:
            raise AnalysisError(
                f"--study {slug!r} is interleaved (stimuli of {', '.join(mixed)}): plan with its "
                "experiment's per-defense studies and --interleaved"
            )
        adversarial = [
            s
            for s in rows
            if s.kind == StimulusKind.adversarial
            and s.target is not None
            and s.target != s.original_label
        ]
        catch = [s for s in rows if s.kind == StimulusKind.catch]
        if not adversarial:
            raise AnalysisError(f"--study {slug!r}: no adversarial stimuli with a target")
        return StimulusSet(
            defense=study.defense,
            network=study.network,
            dataset=study.dataset,
            stimulus_ids=tuple(s.stimulus_key for s in adversarial),
            original=np.array([s.original_label for s in adversarial]),
            target=np.array([s.target for s in adversarial]),
            rho=np.array([s.rho for s in adversarial], dtype=float),
            confidence=np.array([s.confidence_original for s in adversarial], dtype=float),
            catch_ids=tuple(s.stimulus_key for s in catch),
            catch_original=np.array([s.original_label for s in catch], dtype=int),
            num_classes=study.num_classes,
            class_names=tuple(study.class_names),
        )


def _arms(args: argparse.Namespace) -> list[Arm]:
    sources = [StimulusSet.from_bundle(path) for path in args.bundle] + [
        _stimuli_from_database(args.database_url, slug) for slug in args.study
    ]
    if not sources:
        raise AnalysisError("give the stimuli: --bundle DIR or --study SLUG (repeatable)")
    rates = list(args.change_rate)
    if args.difference is not None and len(sources) == 1:
        sources = sources * 2
        rates = rates * 2 if len(rates) == 1 else rates
    rates = change_rates(rates, len(sources))
    if args.difference is not None:
        rates[0] += args.difference
    names = [""] * len(sources)
    titles = [f"{s.defense}/{s.network}" for s in sources]
    if len(set(titles)) < len(titles):  # the same stimuli twice: tell the arms apart
        names = [f"arm{n + 1}" for n in range(len(sources))]
    return [
        Arm(stimuli, annotators_from(args, rate), name)
        for stimuli, rate, name in zip(sources, rates, names, strict=True)
    ]


def _design(args: argparse.Namespace) -> Design:
    return Design(
        assignments=args.assignments,
        items_per_assignment=args.items,
        labels_per_image=args.k,
        interleaved=args.interleaved,
        catch_per_assignment=getattr(args, "catch_per_assignment", 0),
    )


def _plan(args: argparse.Namespace) -> None:
    arms, design = _arms(args), _design(args)
    goal = Goal(power=args.power, alpha=args.alpha, half_width=args.half_width)
    costs = Costs(
        mturk_reward=Decimal(args.mturk_reward),
        mturk_fee=Decimal(args.mturk_fee),
        prolific_reward=Decimal(
            args.mturk_reward if args.prolific_reward is None else args.prolific_reward
        ),
        prolific_fee=Decimal(args.prolific_fee),
    )
    plan = make_plan(arms, design, goal, costs, replicates=args.replicates, seed=args.seed)
    write_output(render_plan(plan, args.format), args.out)


def _simulate(args: argparse.Namespace) -> None:
    arms, design = _arms(args), _design(args)
    if len({(a.stimuli.defense, a.stimuli.network) for a in arms}) < len(arms):
        raise AnalysisError(
            "simulate writes one study per defense and network: give different bundles "
            "(the same one twice would pool into one Table 2 row)"
        )
    studies = simulate_study(arms, replace(design), seed=args.seed)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(export_csv(studies), encoding="utf-8")
    truth = {
        study.info.slug: arm.annotators.expected_shares(arm.stimuli)
        for study, arm in zip(studies, arms, strict=True)
    }
    labels = sum(len(s.rows) for s in studies)
    print(f"analyze-study simulate: {labels} labels written to {args.out}", file=sys.stderr)
    print(json.dumps({"expected_shares": truth}, indent=2))


def main(command: str, argv: Sequence[str], settings: Settings) -> int:
    build = build_plan_parser if command == "plan" else build_simulate_parser
    args = build(settings).parse_args(list(argv))
    call = _plan if command == "plan" else _simulate
    return run_command(
        f"analyze-study {command}", lambda: call(args), usage=(AnalysisError, DatabaseNotReady)
    )
