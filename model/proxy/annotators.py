"""Both proxy annotators for one dataset, fitted on its training digits.

The k-NN and the ensemble see only the training split; the stimuli come from the test
split, so neither has seen the originals of the images it labels. Each annotator's
accuracy on the clean test split is measured here: it is the ceiling of "no change" on
unperturbed images and the yardstick for every proxy Table 2 figure.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from model.datasets import load_dataset
from model.proxy.defaults import ENSEMBLE_NAME
from model.proxy.ensemble import EnsembleAnnotator, MemberRecipe, obtain_members
from model.proxy.knn import KNNAnnotator
from model.proxy.labeling import Annotator


@dataclass(frozen=True)
class ProxyAnnotators:
    dataset: str
    annotators: list[Annotator]
    # Accuracy of each annotator (by name) on the dataset's clean test split.
    accuracy: dict[str, float]


def clean_accuracy(annotator: Annotator, images: torch.Tensor, labels: torch.Tensor) -> float:
    return float((annotator.predict(images) == labels).double().mean())


def build_annotators(
    dataset: str,
    *,
    members: Sequence[tuple[str, int]],
    k: int,
    epochs: int,
    folder: str | os.PathLike[str],
    data_root: str | os.PathLike[str] | None = None,
    train_limit: int | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> ProxyAnnotators:
    """The k-NN (k) and the ensemble (`members`, `epochs` each) for `dataset`; with members of
    several architectures, also one sub-ensemble per architecture (`ensemble-fc`, ...).

    Raises DatasetError if the dataset cannot be loaded, ValueError for a bad k.
    """
    train_images, train_labels = load_dataset(dataset, "train", data_root).tensors[:2]
    test_images, test_labels = load_dataset(dataset, "test", data_root).tensors[:2]
    if train_limit is not None:
        train_images, train_labels = train_images[:train_limit], train_labels[:train_limit]
    knn = KNNAnnotator(train_images, train_labels, k=k)  # a bad k fails before any training
    recipes = [MemberRecipe(network, seed, epochs=epochs) for network, seed in members]
    nets = obtain_members(recipes, train_images, train_labels.long(), Path(folder), log=log)
    annotators: list[Annotator] = [knn, EnsembleAnnotator(nets)]
    architectures = list(dict.fromkeys(recipe.network for recipe in recipes))
    if len(architectures) > 1:
        # Each architecture's members on their own: adversarial examples transfer most
        # between networks of one architecture, so the gap between these two shows how much
        # of the full ensemble's "change" is transfer rather than a changed digit.
        for network in architectures:
            chosen = [
                net for net, recipe in zip(nets, recipes, strict=True) if recipe.network == network
            ]
            annotators.append(EnsembleAnnotator(chosen, name=f"{ENSEMBLE_NAME}-{network}"))
    accuracy = {a.name: clean_accuracy(a, test_images, test_labels) for a in annotators}
    return ProxyAnnotators(dataset, annotators, accuracy)
