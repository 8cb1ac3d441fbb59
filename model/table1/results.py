"""What evaluating one checkpoint yields, and its JSON form (the per-run cache of Table 1)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Table 1's robustness columns, in the paper's order; `hc-authors` is the paper's attack with
# the authors' float32 numerics and rho policy, the like-for-like partner of its HC column.
ATTACK_COLUMNS = ("deepfool", "cw", "hc", "hc-authors")
# How each column's rho is computed (part of its cache key). "project": inputs misclassified
# from the start count 0 and attack failures are excluded from the mean (counted apart).
# "authors": as the authors' test.py did for their attack: every test image is attacked from
# its true label, misclassified ones too, and every returned image is averaged in, failures
# included.
RHO_POLICIES = {"deepfool": "project", "cw": "project", "hc": "project", "hc-authors": "authors"}


def rho_policy(attack: str) -> str:
    return RHO_POLICIES.get(attack, "project")


@dataclass(frozen=True)
class AttackSummary:
    """Robustness of one checkpoint under one attack.

    rho is mean ||r||/||x|| over the attacked images, inputs misclassified from the start
    counting 0; failed attacks are excluded from the mean and counted in `failures`
    (under the "authors" policy, see `RHO_POLICIES`, both are averaged in instead).
    """

    rho: float
    attacked: int
    failures: int
    misclassified: int
    median_iterations: float | None
    seconds: float


@dataclass(frozen=True)
class CheckpointEvaluation:
    checkpoint: str
    checkpoint_sha256: str
    defense: str
    network: str
    dataset: str
    seed: int
    epoch: int
    preset: str
    # Error on the whole test split; the attacks may run on a subset (see the preset).
    test_error: float
    test_images: int
    attacks: dict[str, AttackSummary] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckpointEvaluation:
        values = dict(data)
        values["attacks"] = {
            name: AttackSummary(**summary) for name, summary in values["attacks"].items()
        }
        return cls(**values)
