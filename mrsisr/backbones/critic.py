"""The conditional WGAN-GP critic of MUNet-FS-cWGAN and its training losses (Dong 2022b).

The critic scores a map together with its conditions: input `[LR, T1, FLAIR, x]` on the 64x64 grid,
four strided convolutions (kernel 4, stride 2, no bias) with instance norm and LeakyReLU 0.2 at
widths 32/64/128/256 (64 -> 4 px), then Linear(256*4*4 -> 16)-LReLU-Linear(16 -> 1). The authors'
critic is the 3-D version on 192x192x3 patches (kernels 4x4x{3,1}, strides 2x2x{3,1}, so its last
feature map is 12x12 and its first linear layer 256*12*12 wide; 1.28M parameters); ours has
755,745 at the default widths. The critic is a training-only part: Table 1 does not count it.

Training (WGAN-GP, Gulrajani et al. 2017, as in the authors' code):

- critic step: [`critic_loss`][mrsisr.backbones.critic.critic_loss]
  `= D(fake) - D(real) + 10 * (||grad D(x_hat)|| - 1)^2`, with `x_hat` a random per-sample
  interpolate of real and fake;
- generator step: [`generator_loss`][mrsisr.backbones.critic.generator_loss]
  `= 0.16 L1 + 0.84 (1 - MS-SSIM) + lambda_adv * (-D(fake))`, MS-SSIM computed after bicubic
  upsampling to 192x192 (the authors' MRI grid; pytorch-msssim needs more than 160 px for its 5
  scales with an 11-tap window);
- [`CRITIC_STEPS`][mrsisr.backbones.critic.CRITIC_STEPS] = 5 critic steps per generator step;
  Adam lr 1e-4, betas (0.5, 0.9) for both networks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from pytorch_msssim import ms_ssim
from torch import Tensor, nn

from mrsisr.registries import BACKBONES
from mrsisr.types import Condition

__all__ = [
    "CRITIC_STEPS",
    "GP_WEIGHT",
    "L1_WEIGHT",
    "MSSSIM_WEIGHT",
    "WGANCritic",
    "critic_loss",
    "generator_loss",
    "gradient_penalty",
    "reconstruction_loss",
]

CRITIC_STEPS: int = 5
"""Critic updates per generator update (WGAN-GP, as in the authors' training)."""
GP_WEIGHT: float = 10.0
"""Weight of the gradient penalty."""
L1_WEIGHT: float = 0.16
"""Weight of the L1 term of the generator loss."""
MSSSIM_WEIGHT: float = 0.84
"""Weight of the `1 - MS-SSIM` term of the generator loss."""


@BACKBONES.register("wgan_critic")
class WGANCritic(nn.Module):
    """Conditional WGAN critic: strided convs + IN + LReLU on [LR, T1, FLAIR, x], then 2 linears.

    Args:
        in_channels: Input channels: the 3 conditions plus the scored map.
        widths: Output widths of the strided convolutions (each halves the size).
        hidden: Width of the hidden linear layer.
        image_size: Side of the square input (64).
    """

    def __init__(
        self,
        in_channels: int = 4,
        widths: Sequence[int] = (32, 64, 128, 256),
        hidden: int = 16,
        image_size: int = 64,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for w in widths:
            layers += [
                nn.Conv2d(c, w, 4, stride=2, padding=1, bias=False),
                nn.InstanceNorm2d(w),
                nn.LeakyReLU(0.2),
            ]
            c = w
        self.features = nn.Sequential(*layers)
        side = image_size // 2 ** len(widths)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c * side * side, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, 1),
        )

    def forward(self, cond: Condition, x: Tensor) -> Tensor:
        """Score maps given their conditions.

        Args:
            cond: Conditions; uses `lr`, `t1`, `flair` `(B, 1, H, W)`.
            x: Maps to score (super-resolved or high-resolution) `(B, 1, H, W)`.

        Returns:
            Critic values `(B,)` (higher = judged more real).
        """
        h = torch.cat([cond.lr, cond.t1, cond.flair, x], dim=1)
        return self.head(self.features(h)).squeeze(1)


def gradient_penalty(
    critic: WGANCritic,
    cond: Condition,
    real: Tensor,
    fake: Tensor,
    generator: torch.Generator | None = None,
) -> Tensor:
    """WGAN-GP gradient penalty `E[(||grad_x D(x_hat)||_2 - 1)^2]`.

    Args:
        critic: The critic.
        cond: Conditions of the batch.
        real: High-resolution maps `(B, 1, H, W)`.
        fake: Generated maps `(B, 1, H, W)` (detached by the caller for the critic step).
        generator: CPU random generator for the interpolation weights.

    Returns:
        Scalar penalty (unweighted).
    """
    alpha = torch.rand(real.shape[0], 1, 1, 1, generator=generator).to(real)
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(cond, x_hat).sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1.0) ** 2).mean()


def critic_loss(
    critic: WGANCritic,
    cond: Condition,
    real: Tensor,
    fake: Tensor,
    gp_weight: float = GP_WEIGHT,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Critic loss of one WGAN-GP critic step: `D(fake) - D(real) + gp_weight * GP`.

    Args:
        critic: The critic.
        cond: Conditions of the batch.
        real: High-resolution maps `(B, 1, H, W)`.
        fake: Generated maps `(B, 1, H, W)`; detached here.
        gp_weight: Gradient-penalty weight (10).
        generator: Random generator for the penalty's interpolation weights.

    Returns:
        Scalar loss to minimise over the critic's parameters.
    """
    fake = fake.detach()
    wasserstein = critic(cond, fake).mean() - critic(cond, real).mean()
    return wasserstein + gp_weight * gradient_penalty(critic, cond, real, fake, generator)


def reconstruction_loss(x0_hat: Tensor, x0: Tensor, size: int = 192) -> Tensor:
    """`0.16 * L1 + 0.84 * (1 - MS-SSIM)`, MS-SSIM after bicubic upsampling to `size`.

    Args:
        x0_hat: Predicted maps `(B, 1, H, W)` in [0, 1].
        x0: Target maps `(B, 1, H, W)` in [0, 1].
        size: Side the maps are upsampled to for MS-SSIM (192, the authors' MRI grid; must be
            above 160 for pytorch-msssim's 5 scales).

    Returns:
        Scalar loss.
    """
    l1 = (x0_hat - x0).abs().mean()
    up_hat = F.interpolate(x0_hat, size=(size, size), mode="bicubic", align_corners=False)
    up = F.interpolate(x0, size=(size, size), mode="bicubic", align_corners=False)
    msssim = ms_ssim(up_hat, up, data_range=1.0, size_average=True)
    return L1_WEIGHT * l1 + MSSSIM_WEIGHT * (1.0 - msssim)


def generator_loss(
    x0_hat: Tensor,
    x0: Tensor,
    critic: WGANCritic | None = None,
    cond: Condition | None = None,
    lambda_adv: float | Tensor = 0.0,
) -> Tensor:
    """Generator loss `0.16 L1 + 0.84 (1 - MS-SSIM) + lambda_adv * (-D(x0_hat))`.

    Args:
        x0_hat: Generated maps `(B, 1, H, W)`.
        x0: Target maps `(B, 1, H, W)`.
        critic: The critic, or `None` for the reconstruction loss alone.
        cond: Conditions of the batch (needed with a critic).
        lambda_adv: Adversarial weight, a float or `(B,)` (the value the generator was run with).

    Returns:
        Scalar loss to minimise over the generator's parameters.
    """
    loss = reconstruction_loss(x0_hat, x0)
    lam = torch.as_tensor(lambda_adv, dtype=x0_hat.dtype, device=x0_hat.device)
    if critic is not None and bool((lam != 0).any()):
        if cond is None:
            raise ValueError("generator_loss: the adversarial term needs the batch's conditions")
        loss = loss + (lam * -critic(cond, x0_hat)).mean()
    return loss
