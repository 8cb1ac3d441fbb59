"""Run under torchrun by test_distributed.py: trains one tiny run, then saves this process's
weights as rank<R>.pt beside the checkpoint so the test can compare processes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch


def main(config_json: str, out_dir: str) -> None:
    from model.training import TrainConfig, Trainer

    trainer = Trainer(TrainConfig.from_dict(json.loads(config_json)), out_dir, progress=False)
    rank = trainer.context.rank
    trainer.run()
    state = {f"classifier.{k}": v for k, v in trainer.net.state_dict().items()}
    if trainer.defense.critic_state() is not None:
        state.update({f"critic.{k}": v for k, v in trainer.defense.critic_state().items()})
    torch.save(state, Path(out_dir) / f"rank{rank}.pt")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
