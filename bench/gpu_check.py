"""The GPU path, checked end to end in a few minutes: train, attack, compare with the CPU, time.

    scripts/gpu-check.sh                         # = python bench/gpu_check.py --device cuda
    python bench/gpu_check.py --device cpu --steps 5 --stimuli 40 --timing-steps 3   # dry run

1. Every defense trains `--steps` steps on the device and the same steps on the CPU (same
   seed, same data, the real `advcritic train`); the two models' test error and DeepFool rho
   (real `advcritic evaluate`, `--eval-images` test images) must agree within tolerance: GPU
   and CPU kernels round differently, so hundreds of steps end in different weights, but not
   in a different model.
2. One CPU-trained checkpoint (`--stimuli-defense`) makes `--stimuli` stimuli on the device and
   on the CPU (the real `advcritic stimuli`): the same weights, so the mean rho and the share
   that reached C must agree closely.
3. An `ours` epoch on full-size batches: `--timing-steps` steps of batch 100 on 60,000 images
   (Fashion-MNIST when its files are there, else random images of the same shape: the cost
   of a step does not depend on the pixels), extrapolated to the 600 steps of an epoch and to
   the paper's 100 epochs.

Writes OUT/report.md and OUT/report.json, prints the report, and exits 1 if a comparison is out
of tolerance (2 for bad input, e.g. no CUDA device).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from contract.names import DEFENSES  # noqa: E402
from model.cpu_threads import configure_thread_waiting  # noqa: E402

FULL_SIZE = 60_000
PAPER_EPOCHS = 100
# Agreement between a device-trained and a CPU-trained model after the same steps.
TRAINED_RHO_TOLERANCE = 0.10  # relative
TRAINED_ERROR_TOLERANCE = 0.03  # absolute (3 points of test error)
# Agreement between stimuli made on two devices from the same weights.
STIMULI_RHO_TOLERANCE = 0.01  # relative
STIMULI_REACHED_TOLERANCE = 0.01  # absolute share


@dataclass(frozen=True)
class Comparison:
    what: str
    device: float
    cpu: float
    tolerance: float
    relative: bool

    @property
    def difference(self) -> float:
        gap = abs(self.device - self.cpu)
        return gap / abs(self.cpu) if self.relative and self.cpu else gap

    @property
    def agrees(self) -> bool:
        return self.difference <= self.tolerance

    def line(self) -> str:
        unit = "relative" if self.relative else "absolute"
        verdict = "ok" if self.agrees else "OUT OF TOLERANCE"
        return (
            f"| {self.what} | {self.device:.4f} | {self.cpu:.4f} | {self.difference:.4f} "
            f"({unit}, tolerance {self.tolerance}) | {verdict} |"
        )


def advcritic(*args: str) -> str:
    command = [sys.executable, "-m", "pipeline", *args]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"advcritic {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def default_dataset() -> str:
    from model.datasets import DatasetError, load_dataset

    try:
        load_dataset("fashion-mnist", "test")
        return "fashion-mnist"
    except DatasetError:
        return "mnist-5k"


def train(defense: str, device: str, role: str, options: argparse.Namespace, out: Path) -> Path:
    run = out / f"{defense}-{role}"
    advcritic(
        "train", "--defense", defense, "--net", "fc", "--dataset", options.dataset,
        "--epochs", "1", "--train-limit", str(options.steps * options.batch_size),
        "--batch-size", str(options.batch_size), "--eval-every", "0", "--seed", "0",
        "--device", device, "--out", str(run), "--no-progress",
    )  # fmt: skip
    return run / "checkpoint.pt"


def evaluate(checkpoint: Path, options: argparse.Namespace) -> dict[str, float]:
    report = json.loads(
        advcritic(
            "evaluate",
            "--checkpoint",
            str(checkpoint),
            "--attacks",
            "deepfool",
            "--limit",
            str(options.eval_images),
            "--format",
            "json",
            "--no-progress",
        )  # fmt: skip
    )
    return {"test_error": report["test_error"], "rho": report["attacks"]["deepfool"]["rho"]}


def stimuli(
    checkpoint: Path, device: str, role: str, options: argparse.Namespace, out: Path
) -> dict[str, Any]:
    report = advcritic(
        "stimuli", "--checkpoint", str(checkpoint), "--limit", str(options.stimuli),
        "--device", device, "--out", str(out / f"stimuli-{role}"),
        "--json", "--no-progress",
    )  # fmt: skip
    return json.loads(report)


def time_ours_epoch(device_name: str, options: argparse.Namespace) -> dict[str, Any]:
    """Seconds per step of `ours` on batches of 100 drawn from 60,000 images."""
    import torch

    from model.defenses import build_defense
    from model.networks import build_classifier
    from model.training import TrainingData, build_config

    device = torch.device(device_name)
    if default_dataset() == "fashion-mnist":
        data = TrainingData.load("fashion-mnist")
        images, labels, source = data.train_images, data.train_labels, "fashion-mnist train"
    else:
        generator = torch.Generator().manual_seed(0)
        images = torch.rand(FULL_SIZE, 1, 28, 28, generator=generator)
        labels = torch.randint(0, 10, (FULL_SIZE,), generator=generator)
        source = "random images (Fashion-MNIST not found)"
    images, labels = images.to(device), labels.to(device)
    torch.manual_seed(0)
    config = build_config(defense="ours", network="fc", preset="paper", dataset="mnist-5k")
    defense = build_defense("ours", build_classifier("fc").to(device), config.params(),
                            config.optimizer)  # fmt: skip
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(1))
    batches = order[: (options.timing_steps + 1) * 100].view(-1, 100).to(device)
    seconds = []
    for index, batch in enumerate(batches):
        started = time.perf_counter()
        defense.train_step(images[batch], labels[batch], pretraining=False)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if index > 0:  # the first step is a warm-up (kernels, allocator)
            seconds.append(time.perf_counter() - started)
    per_step = statistics.median(seconds)
    steps_per_epoch = len(images) // 100
    return {
        "device": device_name,
        "images": source,
        "seconds_per_step": per_step,
        "steps_timed": len(seconds),
        "epoch_seconds": per_step * steps_per_epoch,
        "paper_run_hours": per_step * steps_per_epoch * PAPER_EPOCHS / 3600,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="device under test (default cuda)")
    parser.add_argument("--steps", type=int, default=300, help="training steps per defense")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--eval-images", type=int, default=500, help="test images for rho")
    parser.add_argument("--stimuli", type=int, default=1000, help="stimuli per device")
    parser.add_argument("--stimuli-defense", default="ours")
    parser.add_argument("--timing-steps", type=int, default=50)
    parser.add_argument("--dataset", help="default: fashion-mnist if found, else mnist-5k")
    parser.add_argument("--defenses", default=",".join(DEFENSES))
    parser.add_argument("--out", type=Path, help="report folder (default: a temporary one)")
    options = parser.parse_args()
    configure_thread_waiting()  # before torch loads
    for flag in ("steps", "batch_size", "eval_images", "stimuli", "timing_steps"):
        if getattr(options, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1")
    import torch

    if options.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"gpu-check: --device {options.device}: no CUDA device here", file=sys.stderr)
        return 2
    options.dataset = options.dataset or default_dataset()
    defenses = [name.strip() for name in options.defenses.split(",") if name.strip()]
    if options.stimuli_defense not in defenses:
        parser.error(f"--stimuli-defense {options.stimuli_defense!r} is not among --defenses")

    out = options.out or Path(tempfile.mkdtemp(prefix="gpu-check-"))
    out.mkdir(parents=True, exist_ok=True)
    comparisons: list[Comparison] = []
    trained: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    cpu_checkpoints = {}
    for defense in defenses:
        timings = {}
        results = {}
        for role, device in (("device", options.device), ("cpu", "cpu")):
            begun = time.perf_counter()
            checkpoint = train(defense, device, role, options, out)
            timings[role] = time.perf_counter() - begun
            results[role] = evaluate(checkpoint, options)
            if role == "cpu":
                cpu_checkpoints[defense] = checkpoint
        trained[defense] = {"seconds": timings, "results": results}
        device_run, cpu_run = results["device"], results["cpu"]
        comparisons += [
            Comparison(f"{defense}: DeepFool rho", device_run["rho"], cpu_run["rho"],
                       TRAINED_RHO_TOLERANCE, relative=True),
            Comparison(f"{defense}: test error", device_run["test_error"],
                       cpu_run["test_error"], TRAINED_ERROR_TOLERANCE, relative=False),
        ]  # fmt: skip
    made = {
        role: stimuli(cpu_checkpoints[options.stimuli_defense], device, role, options, out)
        for role, device in (("device", options.device), ("cpu", "cpu"))
    }

    def stat(report: dict[str, Any], key: str) -> float:
        if key == "reached":
            return report["reached_confidence"] / max(1, report["adversarial"])
        return report["mean_rho_of_successes"] or 0.0

    comparisons += [
        Comparison("stimuli: mean rho", stat(made["device"], "rho"), stat(made["cpu"], "rho"),
                   STIMULI_RHO_TOLERANCE, relative=True),
        Comparison("stimuli: share reaching C", stat(made["device"], "reached"),
                   stat(made["cpu"], "reached"), STIMULI_REACHED_TOLERANCE, relative=False),
    ]  # fmt: skip
    timing = time_ours_epoch(options.device, options)
    on_cuda = options.device.startswith("cuda")
    report = {
        "device": options.device,
        "device_name": torch.cuda.get_device_name(options.device) if on_cuda else "cpu",
        "torch": torch.__version__,
        "dataset": options.dataset,
        "steps": options.steps,
        "trained": trained,
        "stimuli": {
            role: made[role] | {"per_second": made[role]["adversarial_per_second"]} for role in made
        },
        "comparisons": [
            asdict(c) | {"difference": c.difference, "agrees": c.agrees} for c in comparisons
        ],
        "ours_epoch": timing,
        "seconds": time.perf_counter() - started,
    }
    text = render(report, comparisons)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(text)
    print(text)
    print(f"written to {out}")
    return 0 if all(c.agrees for c in comparisons) else 1


def render(report: dict[str, Any], comparisons: list[Comparison]) -> str:
    device = report["device"]
    stimuli_rate = {d: report["stimuli"][d]["per_second"] for d in report["stimuli"]}
    epoch = report["ours_epoch"]
    lines = [
        f"# GPU check: {report['device_name']} ({device}), torch {report['torch']}",
        "",
        f"{report['steps']} training steps per defense on {report['dataset']}; "
        f"{len(comparisons)} comparisons with the CPU; {report['seconds']:.0f} s in all.",
        "",
        f"| comparison | {device} | cpu | difference | verdict |",
        "|---|---|---|---|---|",
        *[c.line() for c in comparisons],
        "",
        f"Training seconds ({device} / cpu): "
        + ", ".join(
            f"{name} {t['seconds']['device']:.1f} / {t['seconds']['cpu']:.1f}"
            for name, t in report["trained"].items()
        ),
        f"Stimuli per second ({device} / cpu): "
        f"{stimuli_rate['device']:.1f} / {stimuli_rate['cpu']:.1f}",
        "",
        f"`ours` on full-size batches ({epoch['images']}, batch 100): "
        f"{epoch['seconds_per_step'] * 1000:.1f} ms a step (median of {epoch['steps_timed']}), "
        f"{epoch['epoch_seconds']:.0f} s an epoch of 600 steps; the paper's 100 epochs: "
        f"{epoch['paper_run_hours']:.2f} h.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
