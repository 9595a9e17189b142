"""Distributed training and exact-resume batches: process groups, DDP wrapping, per-step seeds.

Every random draw of step `k` of stage `i` comes from generators seeded by
[`step_seed`][mrsisr.train.parallel.step_seed]`(seed, i, k, rank)`, and
[`BatchPlan`][mrsisr.train.parallel.BatchPlan] makes batch `k` a pure function of `k`: a resumed
run takes exactly the steps of an uninterrupted one. Under `torchrun` each rank takes its share of
every global batch, and losses run inside the DDP-wrapped module's `forward`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from mrsisr.errors import MrsisrError
from mrsisr.types import Batch

__all__ = [
    "BatchPlan",
    "DistInfo",
    "LossModule",
    "ema_swapped",
    "optimizer_step",
    "setup_distributed",
    "step_seed",
    "trainable_params",
    "wrap_ddp",
]


@dataclass
class DistInfo:
    """Process-group facts (a single process outside torchrun).

    Attributes:
        rank: This process's rank.
        world: Number of processes.
        device: This process's device.
    """

    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        """Whether this process writes files and prints."""
        return self.rank == 0


def setup_distributed(device: str = "cpu") -> DistInfo:
    """Join the torchrun process group if there is one.

    Args:
        device: Requested device type (`cpu` or `cuda`).

    Returns:
        Rank, world size and this process's device.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(0, 1, torch.device(device))
    use_cuda = device.startswith("cuda") and torch.cuda.is_available()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    rank = dist.get_rank()
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device("cpu")
    return DistInfo(rank, dist.get_world_size(), dev)


def step_seed(*keys: int) -> int:
    """Derive a 63-bit seed from integers (seed, stage, step, rank, ...).

    Args:
        *keys (int): Integers that identify the draw.

    Returns:
        A seed for `torch.Generator.manual_seed`.
    """
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint64)[0] >> 1)


class BatchPlan:
    """Which maps make up step `k`'s batch, as a pure function of `k` (for exact resume).

    Args:
        dataset: An [`MRSIDataset`][mrsisr.data.dataset.MRSIDataset].
        batch_size: Maps per process.
        seed: Shuffling seed.
        world: Number of processes; each global batch has `batch_size * world` maps.
        rank: This process's rank; it takes its contiguous share of each global batch.
    """

    def __init__(
        self, dataset: Any, batch_size: int, seed: int, world: int = 1, rank: int = 0
    ) -> None:
        from mrsisr.data import MetaboliteBatchSampler

        if len(dataset) == 0:
            raise MrsisrError("the training data hold no non-empty maps")
        self.dataset = dataset
        self.batch_size = batch_size
        self.world, self.rank = world, rank
        self.sampler = MetaboliteBatchSampler(dataset, batch_size * world, shuffle=True, seed=seed)
        self._epoch = -1
        self._batches: list[list[int]] = []

    def indices(self, step: int) -> list[int]:
        """Return the dataset indices of this process's part of batch `step`.

        Args:
            step: Global step number (0-based).

        Returns:
            Dataset indices.
        """
        n = len(self.sampler)
        epoch, pos = divmod(step, n)
        if epoch != self._epoch:
            self.sampler.set_epoch(epoch)
            self._batches = list(iter(self.sampler))
            self._epoch = epoch
        full = self._batches[pos]
        share = math.ceil(len(full) / self.world)
        # a rank left without maps (batch smaller than the world) repeats one: DDP needs every rank to step
        return full[self.rank * share : (self.rank + 1) * share] or full[:1]

    def batch(self, step: int, device: torch.device) -> Batch:
        """Load batch `step` (with the dataset's per-epoch random draws).

        Args:
            step: Global step number.
            device: Where to put the tensors.

        Returns:
            The batch.
        """
        from mrsisr.data import collate

        epoch = step // len(self.sampler)
        self.dataset.set_epoch(epoch)
        return collate([self.dataset[i] for i in self.indices(step)]).to(device)


class LossModule(nn.Module):
    """Wraps a stage's loss so DDP sees it as `forward` (gradients are then all-reduced).

    Args:
        modules: The trained modules, by part name.
        loss: The loss closure `loss(batch, generator)`.
    """

    def __init__(self, modules: Mapping[str, nn.Module], loss: Any) -> None:
        super().__init__()
        self.parts = nn.ModuleDict(dict(modules))
        self._loss = loss

    def forward(self, batch: Batch, generator: torch.Generator | None) -> torch.Tensor:
        """Compute the stage's loss.

        Args:
            batch: The batch.
            generator: Random generator of the loss's draws.

        Returns:
            Scalar loss.
        """
        return self._loss(batch, generator)


def wrap_ddp(module: nn.Module, info: DistInfo) -> nn.Module:
    """Wrap a loss module in DistributedDataParallel under torchrun (unchanged otherwise).

    Args:
        module: The module whose `forward` computes the loss.
        info: Process-group facts.

    Returns:
        The module, DDP-wrapped when there is more than one process.
    """
    if info.world <= 1:
        return module
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [info.device.index] if info.device.type == "cuda" else None
    return DDP(module, device_ids=ids, find_unused_parameters=False)


def trainable_params(modules: Mapping[str, nn.Module]) -> list[nn.Parameter]:
    """The trainable parameters of several modules, each once (shared parts are not doubled).

    Args:
        modules: Modules by part name.

    Returns:
        The parameters that require gradients.
    """
    seen: set[int] = set()
    out = []
    for m in modules.values():
        for p in m.parameters():
            if id(p) not in seen and p.requires_grad:
                seen.add(id(p))
                out.append(p)
    return out


@contextmanager
def ema_swapped(modules: Mapping[str, nn.Module], emas: Mapping[str, Any]) -> Iterator[None]:
    """Temporarily load EMA weights into the live modules (for validation).

    Args:
        modules: Live modules by part name.
        emas: EMA wrappers (with `.module`) by part name; parts without one are left alone.

    Yields:
        Nothing; the live weights are restored on exit.
    """
    saved = {
        k: {n: t.detach().clone() for n, t in m.state_dict().items()}
        for k, m in modules.items()
        if k in emas
    }
    try:
        for k, ema in emas.items():
            modules[k].load_state_dict(ema.module.state_dict())
        yield
    finally:
        for k, sd in saved.items():
            modules[k].load_state_dict(sd)


def optimizer_step(
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None = None,
    clip: tuple[list[nn.Parameter], float] | None = None,
) -> None:
    """Backward pass and one optimiser step, through a gradient scaler when training in fp16.

    Args:
        loss: The loss (gradients of the optimiser's parameters must be zero or `None`).
        optimizer: The optimiser.
        scaler: A `torch.amp.GradScaler` (fp16), or `None`.
        clip: `(parameters, max_norm)` to clip the gradient norm of (after unscaling), or `None`.
    """
    if scaler is None:
        loss.backward()
        if clip is not None:
            nn.utils.clip_grad_norm_(*clip)
        optimizer.step()
        return
    scaler.scale(loss).backward()
    if clip is not None:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(*clip)
    scaler.step(optimizer)
    scaler.update()
