"""What a training run is told ([`TrainConfig`][mrsisr.train.config.TrainConfig]) and what each stage reports
([`StageResult`][mrsisr.train.config.StageResult]).
"""

from __future__ import annotations

from dataclasses import dataclass

from mrsisr.errors import MrsisrError
from mrsisr.lr_schedules import LR_SCHEDULES
from mrsisr.runtime import check_runtime

__all__ = ["StageResult", "TrainConfig"]


@dataclass
class TrainConfig:
    """Settings of one training run (per stage where it matters).

    Attributes:
        steps: Optimiser steps per stage.
        batch_size: Maps per step (per process under torchrun).
        seed: Seed of every random draw.
        lr: Learning rate for every stage; `None` keeps each stage's paper default. A critic with
            a rate of its own (`Stage.critic_lr`, e.g. a GAN's `initializer.critic_lr`) keeps it.
        ema_decay: EMA decay (with timm's warm-up, so short runs are not dominated by the init).
        checkpoint_every: Steps between `latest` checkpoints.
        validate_every: Steps between validation passes (and `best` checkpoints).
        val_batches: Validation batches per pass.
        device: Torch device, e.g. `cpu` or `cuda`.
        lr_schedule: Learning-rate schedule of every stage over its `steps`: `"constant"`,
            `"linear"` (decay to zero, the paper's "decay per iteration") or `"cosine"`; see
            [`lr_factor`][mrsisr.lr_schedules.lr_factor]. `None`: the recipe's `[train]`
            value, else constant.
        warmup_steps: Linear warm-up steps before the schedule. `None`: the recipe's `[train]`
            value, else 0.
        precision: `fp32`, `bf16` or `fp16`: the forward passes under autocast at that
            precision (fp16 with a gradient scaler, saved in checkpoints); weights, optimiser
            and EMA stay float32. See [`mrsisr.runtime`][mrsisr.runtime].
        compile: A `torch.compile` backend for the loss computation (`inductor`, or `aot_eager`
            / `eager` to check tracing), or `None`.
        init_adapt: Let `init` weights come from a network of the same layout that differs in
            its inputs: the DDPM UNet into FTDDM's (the s-embedding is new), FTDDM's UNet into
            one without the mask or the MRIs (Table 3); see `adapt` of
            [`load_weights_into`][mrsisr.weights.load_weights_into].
    """

    steps: int = 1000
    batch_size: int = 8
    seed: int = 0
    lr: float | None = None
    ema_decay: float = 0.9999
    checkpoint_every: int = 250
    validate_every: int = 250
    val_batches: int = 8
    device: str = "cpu"
    lr_schedule: str | None = None
    warmup_steps: int | None = None
    precision: str = "fp32"
    compile: str | None = None
    init_adapt: bool = False

    def __post_init__(self) -> None:
        check_runtime(self.precision, self.compile)
        for name in ("steps", "batch_size", "checkpoint_every", "validate_every"):
            if getattr(self, name) < 1:
                raise MrsisrError(f"`{name}` must be at least 1")
        if self.val_batches < 0:
            raise MrsisrError("`val_batches` must be non-negative")
        if self.lr_schedule is not None and self.lr_schedule not in LR_SCHEDULES:
            raise MrsisrError(
                f"`lr_schedule` must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}"
            )
        if self.warmup_steps is not None and not 0 <= self.warmup_steps < self.steps:
            raise MrsisrError(
                f"`warmup_steps` must be in [0, `steps`), got {self.warmup_steps} with {self.steps} steps"
            )


@dataclass
class StageResult:
    """What one stage did.

    Attributes:
        name: Stage name.
        steps: Steps trained (0 when reused).
        final_loss: Mean training loss over the last 50 steps.
        best_val_loss: Lowest validation loss seen (`None` without validation data).
        wall_time_s: Seconds spent in this stage in this process (across resumes: summed).
        reused_from: Path the weights were loaded from instead of training, if any.
        initialized_from: Path the weights were loaded from before training (fine-tuning), if
            any.
    """

    name: str
    steps: int = 0
    final_loss: float | None = None
    best_val_loss: float | None = None
    wall_time_s: float = 0.0
    reused_from: str | None = None
    initialized_from: str | None = None
