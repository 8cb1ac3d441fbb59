"""`advcritic proxy-labels`: a proxy Table 2 before anyone is paid to label.

    advcritic proxy-labels stimuli/ours-fc stimuli/mm-fc --out proxy-labels.csv
    analyze-study --proxy proxy-labels.csv

Labels every stimulus of each bundle with annotators that were never attacked (the k-NN
over the training digits, and an ensemble of independently trained classifiers, see
`model.proxy`) and writes the labels in the study server's export format, one row per
(stimulus, annotator), marked as proxy rows. Ensemble members are cached under
`--annotators-dir`, so a second run trains nothing. Every bundle is read and verified
before any work starts: a missing or damaged one is named, with exit status 2, and nothing
is written.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contract.cli import UsageError
from model.proxy.defaults import DEFAULT_EPOCHS, DEFAULT_K, DEFAULT_MEMBERS

if TYPE_CHECKING:
    from contract.bundle import Bundle
    from model.proxy.annotators import ProxyAnnotators


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "proxy-labels",
        help="label stimulus bundles with never-attacked classifiers (a proxy Table 2)",
        description="Label every stimulus of each bundle with a k-nearest-neighbour classifier "
        "over the training digits and an ensemble of independently trained classifiers, and "
        "write the labels in the study server's export format (CSV) for "
        "`analyze-study --proxy`. An estimate of what people will say, not a measurement.",
    )
    parser.add_argument("bundles", nargs="+", type=Path, help="stimulus bundle folders")
    parser.add_argument("--out", required=True, type=Path, help="CSV file to write")
    parser.add_argument(
        "--annotators-dir",
        type=Path,
        default=Path("proxy-annotators"),
        help="where trained ensemble members are cached (default ./proxy-annotators)",
    )
    parser.add_argument(
        "--k", type=int, default=DEFAULT_K, help=f"neighbours of the k-NN (default {DEFAULT_K})"
    )
    parser.add_argument(
        "--members",
        default=",".join(f"{network}-s{seed}" for network, seed in DEFAULT_MEMBERS),
        help="ensemble members as NETWORK-sSEED, comma-separated (default %(default)s)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=DEFAULT_EPOCHS,
        help=f"training epochs of each member (default {DEFAULT_EPOCHS})",
    )
    parser.add_argument(
        "--train-limit",
        type=int,
        help="fit the annotators on the first N training digits only (quick checks)",
    )
    parser.add_argument("--data-root", type=Path, help="folder with the dataset's IDX files")
    parser.add_argument("--threads", type=int, help="CPU threads for PyTorch (default: PyTorch's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress messages")
    parser.set_defaults(handler=run)


def _check_options(args: argparse.Namespace) -> list[tuple[str, int]]:
    """Validate the numbers and the member list before any bundle is read."""
    from model.proxy.ensemble import parse_members

    if args.k < 1:
        raise UsageError(f"--k must be >= 1, got {args.k}")
    if args.epochs < 1:
        raise UsageError(f"--epochs must be >= 1, got {args.epochs}")
    if args.train_limit is not None and args.train_limit < 1:
        raise UsageError(f"--train-limit must be >= 1, got {args.train_limit}")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {args.threads}")
    if args.out.is_dir():
        raise UsageError(f"--out {args.out} is a folder; give a CSV file name")
    try:
        return parse_members(args.members)
    except ValueError as error:
        raise UsageError(f"--members {args.members!r}: {error}") from error


def _read_bundles(paths: Sequence[Path]) -> list[Bundle]:
    """Every bundle, verified (manifest and image hashes, a known dataset, one bundle per
    model); UsageError naming the bad one."""
    from contract.bundle import BundleError, read_bundle
    from model.datasets import canonical_dataset_name

    bundles: list[Bundle] = []
    seen: dict[tuple[str, str, int], Path] = {}
    for path in paths:
        try:
            bundle = read_bundle(path)
            canonical_dataset_name(bundle.meta.dataset)
        except (BundleError, ValueError) as error:
            raise UsageError(f"bundle {path}: {error}") from error
        meta = bundle.meta
        key = (meta.defense, meta.network, meta.seed)
        if key in seen:
            # Their rows would share one proxy study and its stimulus ids.
            raise UsageError(
                f"bundles {seen[key]} and {path} are both {meta.defense}/{meta.network} seed "
                f"{meta.seed}; label them in separate runs"
            )
        seen[key] = path
        bundles.append(bundle)
    return bundles


def _annotators(
    dataset: str, members: list[tuple[str, int]], args: argparse.Namespace
) -> ProxyAnnotators:
    from model.datasets import DatasetError
    from model.proxy.annotators import build_annotators

    def log(message: str) -> None:
        if not args.no_progress:
            print(message, file=sys.stderr, flush=True)

    try:
        return build_annotators(
            dataset,
            members=members,
            k=args.k,
            epochs=args.epochs,
            folder=args.annotators_dir,
            data_root=args.data_root,
            train_limit=args.train_limit,
            log=log,
        )
    except (DatasetError, ValueError) as error:
        raise UsageError(f"annotators for dataset {dataset!r}: {error}") from error


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """All rows at once, atomically: a failed run leaves no partial file."""
    from contract.labels import EXPORT_COLUMNS

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(buffer.getvalue())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _summary(bundle: Bundle, rows: list[dict[str, Any]], names: list[str]) -> list[str]:
    """Per annotator: change / no change / other among the bundle's adversarial stimuli
    (leaving out those whose target is their true class, as Table 2 does)."""
    lines = [
        f"{bundle.path} ({bundle.meta.defense}/{bundle.meta.network} seed {bundle.meta.seed}):"
    ]
    for name in names:
        counted = [
            r
            for r in rows
            if r["worker_id"] == name
            and r["kind"] == "adversarial"
            and r["target"] != r["original_label"]
        ]
        if not counted:
            lines.append(f"  {name}: no adversarial stimuli to label")
            continue
        change = sum(r["label"] == r["target"] for r in counted) / len(counted)
        keep = sum(r["label"] == r["original_label"] for r in counted) / len(counted)
        lines.append(
            f"  {name}: change {100 * change:.2f}%, no change {100 * keep:.2f}%, "
            f"other {100 * (1 - change - keep):.2f}% of {len(counted)} adversarial images"
        )
    return lines


def run(args: argparse.Namespace) -> int:
    import torch

    from model.proxy.labeling import proxy_rows

    members = _check_options(args)
    bundles = _read_bundles(args.bundles)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    annotators: dict[str, ProxyAnnotators] = {}
    rows: list[dict[str, Any]] = []
    report: list[str] = []
    for bundle in bundles:
        dataset = bundle.meta.dataset
        if dataset not in annotators:
            annotators[dataset] = _annotators(dataset, members, args)
        chosen = annotators[dataset]
        labeled = proxy_rows(bundle, chosen.annotators)
        rows += labeled
        report += _summary(bundle, labeled, [a.name for a in chosen.annotators])
    _write_csv(args.out, rows)
    for dataset, chosen in annotators.items():
        accuracy = ", ".join(
            f"{name} {100 * value:.2f}%" for name, value in chosen.accuracy.items()
        )
        print(f"clean accuracy on the {dataset} test split: {accuracy}")
    print("\n".join(report))
    print(f"wrote {len(rows)} proxy labels to {args.out}")
    return 0
