"""Benchmark: our L2 DeepFool and C&W-L2 against Foolbox 3.3.4's, same net, images, settings.

    python bench/attacks.py                        # trains a reference FC (cpu preset) first
    python bench/attacks.py --checkpoint runs/reference-fc-s0/checkpoint.pt --images 500

One trained FC (784-1200-1200-1200-10), the first --images mnist-5k test digits it
classifies correctly, true labels. Both libraries attack the whole set in one batch:

  DeepFool: steps 500 (the paper's budget), overshoot 0.02, all 10 classes as candidates,
            logit differences, no per-step clip (Foolbox has none; ours is disabled).
  C&W-L2:   9 binary-search steps x --cw-steps Adam steps (1,000, the paper's), lr 1e-2,
            initial const 1e-3, confidence 0, abort early decided on the whole batch
            (Foolbox's rule; ours runs with abort_group=None to match it).

Prints for each attack: wall time, rho = mean ||r||/||x|| over successes, successes, and
the ratios (Foolbox time / our time, our rho / Foolbox rho). Foolbox's gradients call
`loss.backward()`, which also computes weight gradients unless the model's parameters are
frozen; ratios are taken against Foolbox with frozen parameters, its fastest configuration
(DeepFool is also timed with trainable weights, as most users call it). Targets from the issue:
DeepFool >= 3x faster with rho within 1%; C&W at least as fast with rho no larger.
Our DeepFool with the paper's step clip (0.1) is timed too, for reference (no peer).
Needs the `peers` extra (pip install -e .[peers]: foolbox, which needs only eagerpy).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.attacks import L2CarliniWagnerAttack, L2DeepFoolAttack
from model.checkpoint import load_classifier
from model.datasets import load_dataset


def trained_fc(checkpoint: Path | None, epochs: int, device: torch.device) -> torch.nn.Module:
    """The FC to attack: from --checkpoint, or trained now by the project's own trainer."""
    if checkpoint is None:
        from model.training import build_config, train

        config = build_config(
            defense="reference", network="fc", preset="cpu", seed=0, epochs=epochs, eval_every=0
        )
        folder = Path(tempfile.mkdtemp(prefix="bench-attacks-"))
        print(
            f"training a reference FC for {epochs} epochs on mnist-5k into {folder} ...", flush=True
        )
        checkpoint = train(config, folder, progress=False).checkpoint
    model, record = load_classifier(checkpoint, device=device)
    print(f"model: {record.describe()} ({checkpoint})")
    return model


@contextmanager
def frozen_parameters(model: torch.nn.Module) -> Iterator[None]:
    """Foolbox's fastest configuration: its `loss.backward()` then skips weight gradients."""
    flags = [parameter.requires_grad for parameter in model.parameters()]
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in zip(model.parameters(), flags, strict=True):
            parameter.requires_grad_(flag)


def interleaved(
    runners: dict[str, Callable[[], torch.Tensor]], repeats: int
) -> dict[str, tuple[torch.Tensor, float]]:
    """Run every runner `repeats` times in turn; each one's output and best wall time.

    Interleaving spreads the shared machine's load changes over all contenders, and the
    best of several runs is the least disturbed one (timeit's convention).
    """
    results: dict[str, tuple[torch.Tensor, float]] = {}
    for _ in range(repeats):
        for name, run in runners.items():
            start = time.perf_counter()
            output = run()
            seconds = time.perf_counter() - start
            best = min(seconds, results[name][1]) if name in results else seconds
            results[name] = (output, best)
    return results


def summarize(
    name: str,
    adversarial: torch.Tensor,
    seconds: float,
    images: torch.Tensor,
    labels: torch.Tensor,
    model: torch.nn.Module,
) -> tuple[float, float]:
    """rho over successes (success re-checked here, the same way for both libraries).

    Foolbox's C&W returns an all-zero image where it found no adversarial (its initial
    `best_advs`); a blank image is usually misclassified, so it would pass the re-check
    with ||r|| = ||x||. Such outputs are failures, as in the authors' evaluation (they
    dropped Carlini's blank "non-converged" outputs the same way).
    """
    with torch.no_grad():
        success = model(adversarial).argmax(dim=1) != labels
    success &= adversarial.flatten(1).abs().amax(dim=1) > 0
    ratios = (adversarial - images).flatten(1).norm(dim=1) / images.flatten(1).norm(dim=1)
    rho = float(ratios[success].mean())
    print(
        f"  {name:<30} {seconds:9.2f} s   rho {rho:.5f}   successes {int(success.sum())}/{len(images)}",
        flush=True,
    )
    return rho, seconds


def compare(label: str, ours: tuple[float, float], peer: tuple[float, float]) -> None:
    (our_rho, our_time), (peer_rho, peer_time) = ours, peer
    print(
        f"  => {label}: speed-up {peer_time / our_time:.2f}x (Foolbox time / ours), "
        f"rho ratio {our_rho / peer_rho:.4f} (ours / Foolbox)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--checkpoint", type=Path, help="an FC checkpoint (default: train a reference FC)"
    )
    parser.add_argument(
        "--epochs", type=int, default=10, help="epochs when training the FC here (10)"
    )
    parser.add_argument(
        "--images", type=int, default=500, help="correctly classified test images to attack (500)"
    )
    parser.add_argument("--df-steps", type=int, default=500)
    parser.add_argument("--cw-steps", type=int, default=1000)
    parser.add_argument(
        "--skip-cw", action="store_true", help="DeepFool only (C&W takes the longest)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved DeepFool runs (3)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    import foolbox

    device = torch.device(args.device)
    model = trained_fc(args.checkpoint, args.epochs, device)
    all_images, all_labels = load_dataset("mnist-5k", "test").tensors
    with torch.no_grad():
        correct = model(all_images.to(device)).argmax(dim=1).cpu() == all_labels
    images = all_images[correct][: args.images].to(device)
    labels = all_labels[correct][: args.images].to(device)
    print(
        f"{len(images)} correctly classified mnist-5k test images; foolbox {foolbox.__version__}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}",
        flush=True,
    )
    fmodel = foolbox.PyTorchModel(model, bounds=(0, 1), device=device)
    with torch.no_grad():
        model(images)  # warm-up

    print(f"L2 DeepFool ({args.df_steps} steps, overshoot 0.02, 10 candidates, no step clip)")
    print(f"  best of {args.repeats} interleaved runs each")
    peer_df = foolbox.attacks.L2DeepFoolAttack(
        steps=args.df_steps, candidates=10, overshoot=0.02, loss="logits"
    )
    ours_df = L2DeepFoolAttack(steps=args.df_steps, max_step=None, overshoot=0.02, candidates=10)
    paper_df = L2DeepFoolAttack(steps=args.df_steps)

    def foolbox_frozen(attack) -> torch.Tensor:
        with frozen_parameters(model):
            return attack(fmodel, images, labels, epsilons=None)[1]

    runs = interleaved(
        {
            "Foolbox, trainable weights": lambda: peer_df(fmodel, images, labels, epsilons=None)[1],
            "Foolbox, frozen weights": lambda: foolbox_frozen(peer_df),
            "ours L2DeepFoolAttack": lambda: ours_df(model, images, labels).clipped,
            "ours, paper's step clip 0.1": lambda: paper_df(model, images, labels).clipped,
        },
        args.repeats,
    )
    results = {name: summarize(name, *run, images, labels, model) for name, run in runs.items()}
    compare("DeepFool", results["ours L2DeepFoolAttack"], results["Foolbox, frozen weights"])
    compare(
        "DeepFool vs Foolbox as usually called",
        results["ours L2DeepFoolAttack"],
        results["Foolbox, trainable weights"],
    )

    if args.skip_cw:
        return
    settings = {
        "binary_search_steps": 9,
        "steps": args.cw_steps,
        "stepsize": 1e-2,
        "confidence": 0.0,
        "initial_const": 1e-3,
        "abort_early": True,
    }
    print(f"C&W-L2 (9 binary steps x {args.cw_steps} Adam steps, lr 1e-2, const 1e-3, abort early)")
    print("  one run each (they are long); the per-step cost below is measured interleaved")
    peer_cw = foolbox.attacks.L2CarliniWagnerAttack(**settings)
    runs = interleaved(
        {
            "Foolbox, frozen weights": lambda: foolbox_frozen(peer_cw),
            "ours L2CarliniWagnerAttack": lambda: (
                L2CarliniWagnerAttack(**settings, abort_group=None)(model, images, labels).clipped
            ),
        },
        1,
    )
    results = {name: summarize(name, *run, images, labels, model) for name, run in runs.items()}
    compare("C&W-L2", results["ours L2CarliniWagnerAttack"], results["Foolbox, frozen weights"])
    probe = {**settings, "binary_search_steps": 1, "steps": 100, "abort_early": False}
    runs = interleaved(
        {
            "Foolbox": lambda: foolbox_frozen(foolbox.attacks.L2CarliniWagnerAttack(**probe)),
            "ours": lambda: (
                L2CarliniWagnerAttack(**probe, abort_group=None)(model, images, labels).clipped
            ),
        },
        args.repeats,
    )
    per_step = {name: seconds / 100 * 1000 for name, (_, seconds) in runs.items()}
    print(
        f"  per Adam step on {len(images)} images (100 steps, best of {args.repeats}): "
        f"Foolbox {per_step['Foolbox']:.1f} ms, ours {per_step['ours']:.1f} ms, "
        f"ratio {per_step['Foolbox'] / per_step['ours']:.2f}x"
    )


if __name__ == "__main__":
    main()
