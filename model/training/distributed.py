"""Multi-process (multi-GPU, multi-node) training through torchrun and DDP.

Launched by `torchrun`, the training command joins the process group that torchrun set
up (NCCL on GPUs, gloo on CPUs), wraps its modules in `DistributedDataParallel` and trains
on its share of every batch; gradients are averaged, so N processes with batch B/N each
take the same steps as one process with batch B. Run directly, it is a single process
and nothing here does anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_launcher(cls, device: str | torch.device = "cpu") -> DistributedContext:
        """Joins torchrun's process group when launched by it; otherwise one process."""
        device = torch.device(device)
        if not dist.is_torchelastic_launched():
            return cls(device=device)
        if device.type == "cuda":
            # torchrun's per-node process index: which local GPU this process drives.
            device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        return cls(rank=dist.get_rank(), world_size=dist.get_world_size(), device=device)

    def replicate(self, module: nn.Module) -> nn.Module:
        """`module` wrapped for gradient averaging across processes (itself in one process)."""
        if not self.is_distributed:
            return module
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=device_ids)

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sums `tensor` over processes in place and returns it."""
        if self.is_distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def any(self, flag: bool) -> bool:
        """True on every process if `flag` is true on any."""
        if not self.is_distributed:
            return flag
        return bool(self.all_reduce(torch.tensor([float(flag)], device=self.device)).item() > 0)

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        """This process's share of a global batch of indices (every world_size-th)."""
        return batch[self.rank :: self.world_size]

    def barrier(self) -> None:
        if self.is_distributed:
            dist.barrier()

    def close(self) -> None:
        if self.is_distributed and dist.is_initialized():
            dist.destroy_process_group()
