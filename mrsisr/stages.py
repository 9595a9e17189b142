"""Training stages: what a component trains, with which loss and optimiser settings.

A pipeline lists its stages in training order with `training_stages()`; the
[engine][mrsisr.train.engine] runs them one after the other. A stage is plain data plus loss
closures, so the engine needs no knowledge of diffusion, flows or GANs:

- a *loss stage* (denoiser, flow) minimises `loss(batch, generator)` over `modules`;
- an *adversarial stage* (TDPM's generator, MUNet-FS-cWGAN) also has `critic_modules` trained
  `critic_steps` times per step on `critic_loss` first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from mrsisr.types import Batch

LossFn = Callable[[Batch, "torch.Generator | None"], Tensor]
"""A loss closure: `loss(batch, generator) -> scalar tensor`."""


@dataclass
class Stage:
    """One training stage.

    Attributes:
        name: Stage name; also the folder of its checkpoints (`RUN/stages/<name>/`).
        modules: Parts trained (and saved) in this stage, by part name.
        loss: Loss of `modules` for a batch.
        lr: Adam learning rate.
        betas: Adam betas.
        weight_decay: Adam weight decay.
        ema: Keep an exponential moving average of `modules` (used for validation and export).
        critic_modules: Parts trained adversarially against `modules` (not exported for inference
            unless listed in `modules` too).
        critic_loss: Loss of the critic for a batch.
        critic_steps: Critic updates per step of `modules`.
        critic_lr: Critic learning rate (`None`: same as `lr`).
        critic_betas: Critic Adam betas (`None`: same as `betas`).
        frozen: Parts this stage needs but does not train (e.g. the Flow Enhancer's MUNet); they
            must have been trained by an earlier stage or loaded from a path.
        grad_clip: Clip the gradient norm of `modules` to this value (`None`: no clipping).
    """

    name: str
    modules: Mapping[str, nn.Module]
    loss: LossFn
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    ema: bool = True
    critic_modules: Mapping[str, nn.Module] = field(default_factory=dict)
    critic_loss: LossFn | None = None
    critic_steps: int = 1
    critic_lr: float | None = None
    critic_betas: tuple[float, float] | None = None
    frozen: Mapping[str, nn.Module] = field(default_factory=dict)
    grad_clip: float | None = None

    def __post_init__(self) -> None:
        if not self.modules:
            raise ValueError(f"stage '{self.name}' trains no modules")
        if bool(self.critic_modules) != (self.critic_loss is not None):
            raise ValueError(f"stage '{self.name}': critic_modules and critic_loss go together")
        if self.critic_steps < 1:
            raise ValueError(f"stage '{self.name}': critic_steps must be at least 1")

    @property
    def adversarial(self) -> bool:
        """Whether the stage trains a critic too."""
        return self.critic_loss is not None


def training_stages(pipeline: object) -> list[Stage]:
    """Return a pipeline's training stages, in order.

    Args:
        pipeline: A built pipeline.

    Returns:
        The stages its `training_stages()` method declares.

    Raises:
        TypeError: If the pipeline cannot be trained.
    """
    fn = getattr(pipeline, "training_stages", None)
    if fn is None:
        raise TypeError(f"{type(pipeline).__name__} declares no training_stages()")
    return list(fn())
