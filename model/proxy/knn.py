"""The k-nearest-neighbour annotator: the paper's criterion taken literally.

The paper asks that an adversarial image be "indistinguishable from the regular data of the
adversarial target". The most literal test without people is to look up the training
digits closest to the image and see which class they belong to: if the image now lies
among digits of the target, it has become one (Table 2's "change"); if it still lies among
digits of its original class, the perturbation did not change what it shows ("no change").

Distance: Euclidean on raw pixels in [0, 1]. It is the norm the attacks minimise and rho
measures, and it needs no training, so nothing in it can be attacked or overfit. k = 5:
leave-one-out on mnist-5k's 4,000 training digits gets 3,759 right (k = 1: 3,757; k = 3:
3,766; k = 7: 3,741; k = 9: 3,736; docs/table2-proxy.md), within 0.2 points of the best,
and a plurality of five is not decided by one atypical training digit as 1-NN is.
Votes: the class with the most of the k neighbours; a tie goes to the tied class with
the nearest neighbour.
"""

from __future__ import annotations

import torch

from model.proxy.defaults import DEFAULT_K


class KNNAnnotator:
    """Plurality vote of the k training digits nearest in L2 pixel distance."""

    def __init__(
        self,
        train_images: torch.Tensor,
        train_labels: torch.Tensor,
        *,
        k: int = DEFAULT_K,
        num_classes: int = 10,
    ) -> None:
        if k < 1 or k > len(train_images):
            raise ValueError(f"k must be in 1..{len(train_images)}, got {k}")
        self.points = train_images.detach().flatten(1).to(torch.float64)
        self.squared_norms = self.points.pow(2).sum(dim=1)
        self.labels = train_labels.detach().to(torch.long)
        self.k = k
        self.num_classes = num_classes
        self.name = f"knn-k{k}"

    def neighbours(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Squared distances and indices (N, k) of each image's k nearest training digits,
        nearest first. Float64: for 8-bit images distinct squared distances differ by at least
        1/255² ≈ 1.5e-5, far above the ~1e-13 rounding of ||a||² + ||b||² - 2ab."""
        queries = images.detach().flatten(1).to(torch.float64)
        squared = (
            queries.pow(2).sum(dim=1, keepdim=True)
            + self.squared_norms
            - 2 * queries @ self.points.T
        )
        return squared.clamp_min(0).topk(self.k, dim=1, largest=False)

    def vote(self, neighbour_labels: torch.Tensor) -> torch.Tensor:
        """Plurality of each row of labels (N, k), nearest first; ties to the nearest class."""
        n, k = neighbour_labels.shape
        votes = torch.zeros(n, self.num_classes, dtype=torch.long)
        votes.scatter_add_(1, neighbour_labels, torch.ones_like(neighbour_labels))
        # (k - rank) of each class's nearest neighbour: below k + 1, so it only breaks ties.
        nearness = (k - torch.arange(k)).expand(n, k).contiguous()
        nearest = torch.zeros(n, self.num_classes, dtype=torch.long)
        nearest.scatter_reduce_(1, neighbour_labels, nearness, reduce="amax")
        return (votes * (k + 1) + nearest).argmax(dim=1)

    def predict(self, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        parts = []
        for start in range(0, len(images), batch_size):
            _, index = self.neighbours(images[start : start + batch_size])
            parts.append(self.vote(self.labels[index]))
        return torch.cat(parts)
