"""Seconds per training epoch of each defense, relative to `reference`, in one run.

    python bench/training.py                       # FC on mnist-5k (4,000 images), batch 100
    python bench/training.py --threads 1                # steadier on a busy shared CPU
    python bench/training.py --net lenet5 --limit 1000 --device cuda

Every defense trains the same freshly initialised network on the same batches in the same
process, interleaved step by step; the first (warm-up) step of each is not counted. The
ratio to `reference` is the figure to compare across machines, the seconds are this machine's.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from contract.names import DEFENSES
from model.defenses import build_defense  # noqa: E402
from model.networks import build_classifier  # noqa: E402
from model.training import TrainingData, build_config  # noqa: E402
from model.training.seeding import epoch_order  # noqa: E402


def seconds_per_epoch(
    names: list[str],
    network: str,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    device: torch.device,
) -> dict[str, float]:
    """One epoch of each defense, interleaved step by step (round robin), so that load from
    other processes on a shared machine falls on every defense alike."""
    defenses = {}
    for name in names:
        torch.manual_seed(0)
        config = build_config(defense=name, network=network, preset="paper", batch_size=batch_size)
        defenses[name] = build_defense(
            name, build_classifier(network).to(device), config.params(), config.optimizer
        )
    order = epoch_order(len(images), seed=0, epoch=1)
    batches = order[: len(order) - len(order) % batch_size].view(-1, batch_size)
    totals = dict.fromkeys(names, 0.0)
    for index, batch in enumerate(batches):
        for name, defense in defenses.items():
            started = time.perf_counter()
            defense.train_step(images[batch], labels[batch], pretraining=False)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if index > 0:  # the first step of each is a warm-up
                totals[name] += time.perf_counter() - started
    steps = len(batches) - 1
    return {name: total * len(batches) / steps for name, total in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net", default="fc", help="fc | lenet5")
    parser.add_argument("--dataset", default="mnist-5k")
    parser.add_argument("--limit", type=int, default=None, help="training images (default: all)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--defenses", default=",".join(DEFENSES))
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    data = TrainingData.load(args.dataset).limited(args.limit).to(device)
    images, labels = data.train_images, data.train_labels
    steps = len(images) // args.batch_size
    print(
        f"training benchmark: {args.net} on {args.dataset} train ({len(images)} images, "
        f"batch {args.batch_size}, {steps} steps/epoch), {device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"{'defense':<10} {'s/epoch':>9} {'s/step':>8} {'x reference':>12}")
    names = [name.strip() for name in args.defenses.split(",")]
    if "reference" not in names:
        names.insert(0, "reference")
    timings = seconds_per_epoch(names, args.net, images, labels, args.batch_size, device)
    for name in names:
        seconds = timings[name]
        print(
            f"{name:<10} {seconds:>9.2f} {seconds / steps:>8.3f} "
            f"{seconds / timings['reference']:>12.1f}"
        )


if __name__ == "__main__":
    main()
