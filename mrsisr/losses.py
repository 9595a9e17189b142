"""Training losses of the GAN, WGAN-GP and flow parts, in one room.

Every critic or discriminator is called as `critic(x, cond)` and may return one value per map
`(B,)` or one per patch `(B, 1, h, w)`; [`critic_scores`][mrsisr.losses.critic_scores] averages
patches to one score per map.

MUNet-FS-cWGAN (WGAN-GP, Gulrajani et al. 2017, as in the authors' code):

- critic step: [`critic_loss`][mrsisr.losses.critic_loss]
  `= D(fake) - D(real) + 10 * (||grad D(x_hat)|| - 1)^2`, with `x_hat` a random per-sample
  interpolate of real and fake;
- generator step: [`generator_loss`][mrsisr.losses.generator_loss]
  `= 0.16 L1 + 0.84 (1 - MS-SSIM) + lambda_adv * (-D(fake))`, MS-SSIM computed after bicubic
  upsampling to 192x192 (the authors' MRI grid; pytorch-msssim needs more than 160 px for its 5
  scales with an 11-tap window);
- [`CRITIC_STEPS`][mrsisr.losses.CRITIC_STEPS] = 5 critic steps per generator step; Adam lr 1e-4,
  betas (0.5, 0.9) for both networks.

FTDDM's flow and the Flow Enhancer: [`guide_loss`][mrsisr.losses.guide_loss] (Eq. 9).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_msssim import ms_ssim
from torch import Tensor, nn

from mrsisr.types import Condition

__all__ = [
    "CRITIC_STEPS",
    "GP_WEIGHT",
    "L1_WEIGHT",
    "MSSSIM_WEIGHT",
    "critic_loss",
    "critic_scores",
    "generator_loss",
    "gradient_penalty",
    "guide_loss",
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


def critic_scores(critic: nn.Module, x: Tensor, cond: Condition) -> Tensor:
    """One score per map from any critic: `critic(x, cond)` averaged over its patches.

    Args:
        critic: A critic or discriminator called as `critic(x, cond)`.
        x: Maps `(B, 1, H, W)`.
        cond: Their conditions.

    Returns:
        Scores `(B,)`.
    """
    out = critic(x, cond)
    return out.reshape(out.shape[0], -1).mean(1)


def gradient_penalty(
    critic: nn.Module,
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
    (grad,) = torch.autograd.grad(critic(x_hat, cond).sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1.0) ** 2).mean()


def critic_loss(
    critic: nn.Module,
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
    wasserstein = (
        critic_scores(critic, fake, cond).mean() - critic_scores(critic, real, cond).mean()
    )
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
    critic: nn.Module | None = None,
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
        loss = loss + (lam * -critic_scores(critic, x0_hat, cond)).mean()
    return loss


def guide_loss(
    x_hat: Tensor, x0: Tensor, alpha: float = 0.84, guide_size: int | None = 192
) -> Tensor:
    """Guide loss `(1 - alpha) * L1 + alpha * (1 - MS-SSIM)` (Eq. 9), averaged over the batch.

    Args:
        x_hat: Predicted maps `(B, 1, H, W)`.
        x0: Target maps `(B, 1, H, W)` in [0, 1].
        alpha: Weight of the MS-SSIM term.
        guide_size: Side both images are bicubically upsampled to before MS-SSIM (the authors
            use 192); `None` computes MS-SSIM at the native size (which must exceed 160 px).

    Returns:
        Scalar loss.
    """
    l1 = (x_hat - x0).abs().mean()
    a, b = x_hat, x0
    if guide_size is not None and a.shape[-1] != guide_size:
        size = (guide_size, guide_size)
        a = F.interpolate(a, size=size, mode="bicubic", align_corners=False)
        b = F.interpolate(b, size=size, mode="bicubic", align_corners=False)
    msssim = ms_ssim(a, b, data_range=1.0, size_average=True)
    return (1.0 - alpha) * l1 + alpha * (1.0 - msssim)
