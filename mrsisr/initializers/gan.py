"""The GAN initializer of TDPM: `x_{t_start} = G(z, y)`, trained adversarially.

Truncated diffusion (Zheng et al. 2022, TDPM) replaces the long tail of the chain by an implicit
generator of `q(x_{t_start} | y)`. Here the generator is a network the size of the denoising
UNet (a BACKBONES `"unet"`), called at the truncation step on masked Gaussian noise,
`G(z, y) = unet(z * mask, t_start, cond)`, and the discriminator is conditional, judging
`[x_{t_start}, mask, LR, T1, FLAIR]` (SPEC §4, paper-code.md §9). Sampling costs one network
evaluation.

Adversarial objective: the **non-saturating loss with an R1 penalty** (Goodfellow et al. 2014;
Mescheder et al. 2018), as in TDPM's official code, with the penalty measured in noise units
(below; the official code penalises the plain gradient). Reasons, against WGAN-GP:

- it needs one discriminator step per generator step (WGAN-GP wants about five critic steps),
  and the generator here is a 30M-parameter UNet whose steps dominate training time;
- R1 penalises the discriminator's gradient on real samples only, which keeps it from
  overshooting where the data are; samples of `q(x_{t_start} | x_0)` are available in unlimited
  supply and are smooth (a noisy map), so the penalty is well conditioned;
- it works with a normalisation-free patch discriminator, which makes the double backward of the
  penalty cheap.

Losses (logits `D(x, y)` per patch, averaged):

- discriminator: `softplus(-D(x_real)) + softplus(D(G(z)))`
  `+ (r1_gamma / 2) sigma^2 E||grad_x D(x_real)||^2`, with `x_real = q_sample(x_0, t_start)`
  (masked noise) and `sigma^2 = 1 - gamma_{t_start}` the forward process's noise variance;
- generator: `softplus(-D(G(z)))`.

**R1 in noise units.** The penalty is measured on the gradient with respect to `x / sigma`, the
input in units of the forward-process noise, so that one `gamma` means the same at every
truncation step: features of the size of the noise need input gradients of order `1 / sigma`,
and a plain R1 penalty on them grows as `1 / sigma^2`. The TDPM authors' `gamma = 0.01` is set
at T' = 499 on images in [-1, 1], where `sigma` is about 1; here maps lie in [0, 1] and `sigma`
is 0.17 at t = 100, 0.09 at t = 50 and 0.04 at t = 20, so the plain penalty is 36 to 570 times
stronger. Measured on the phantom (one seed, ×4 training maps, batch 8, Adam 1e-4): a fresh
discriminator trained 300 steps against the fixed draws of the T_trunc = 50 generator reached
a loss of 1.28 (accuracy 0.75) with the penalty in noise units, 1.19 (0.66) without R1, but
only 1.37 (0.69) with the plain penalty, and 1.40 (0.50) with the plain penalty at 25 times
the learning rate. The change is not enough on its own: in a full run at T_trunc = 20 with it
(and the authors' rates), the discriminator still stayed at chance (see the bench docs).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mrsisr.diffusion import randn
from mrsisr.errors import RecipeError
from mrsisr.initializers.flow import masked_noisy_target
from mrsisr.registries import INITIALIZERS
from mrsisr.types import Batch, Condition, Schedule

__all__ = ["GANInitializer"]


@INITIALIZERS.register("gan")
class GANInitializer(nn.Module):
    """Conditional generator G(z, y) at the truncation step, trained non-saturating + R1 (TDPM).

    Args:
        generator: Network called as `generator(z, t, cond)` with `z` `(B, 1, H, W)` and `t`
            `(B,)` filled with `t_start`, e.g. a BACKBONES `"unet"` the size of the denoiser.
        discriminator: Network called as `discriminator(x, cond)` returning logits (any shape
            with a leading batch dimension), e.g. a `"patch_critic"`.
        r1_gamma: Weight `gamma` of the R1 penalty `gamma / 2 * sigma^2 * E||grad D(x_real)||^2`
            (the gradient in units of the forward-process noise `sigma` at `t_start`; see the
            module's notes).
        lr: The generator's Adam learning rate.
        critic_lr: The discriminator's Adam learning rate (`None`: the generator's). A critic
            much faster than the generator (two time-scale update rule, Heusel et al. 2017; the
            TDPM authors' code uses 2e-5 for G and 2.5e-3 for D) keeps it from staying at
            chance while the generator moves.
        critic_steps: Discriminator updates per generator update.

    Raises:
        RecipeError: If `r1_gamma` is negative, a learning rate is not positive, or
            `critic_steps` < 1.
    """

    nfe = 1

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        r1_gamma: float = 0.01,
        lr: float = 1e-4,
        critic_lr: float | None = None,
        critic_steps: int = 1,
    ) -> None:
        super().__init__()
        if r1_gamma < 0:
            raise RecipeError(f"[initializer] r1_gamma must be >= 0, got {r1_gamma!r}")
        self.generator = generator
        self.discriminator = discriminator
        self.r1_gamma = float(r1_gamma)
        if critic_lr is not None and critic_lr <= 0:
            raise RecipeError(f"[initializer] critic_lr must be > 0, got {critic_lr!r}")
        if int(critic_steps) < 1:
            raise RecipeError(f"[initializer] critic_steps must be >= 1, got {critic_steps!r}")
        if lr <= 0:
            raise RecipeError(f"[initializer] lr must be > 0, got {lr!r}")
        self.lr = float(lr)
        self.critic_lr = None if critic_lr is None else float(critic_lr)
        self.critic_steps = int(critic_steps)

    def generate(
        self,
        cond: Condition,
        t_start: int,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Run `G(z, y)` on fresh masked noise, keeping the graph (for training).

        Args:
            cond: Conditions of the batch.
            t_start: Truncation step, passed to the generator as its timestep.
            generator: Optional random generator for `z`.

        Returns:
            `x_{t_start}` estimates `(B, 1, H, W)`, zero outside the mask.
        """
        mask = cond.mask if cond.mask.is_floating_point() else cond.mask.float()
        z = randn(mask.shape, mask, generator) * mask
        t = torch.full((mask.shape[0],), int(t_start), dtype=torch.long, device=mask.device)
        return self.generator(z, t, cond) * mask

    @torch.no_grad()
    def sample(
        self,
        cond: Condition,
        t_start: int,
        schedule: Schedule,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Draw `x_{t_start} = G(z, y)`, `z ~ N(0, I)` masked.

        Args:
            cond: Conditions of the batch.
            t_start: Truncation step the generator was trained for.
            schedule: Noise schedule (unused when sampling).
            generator: Optional random generator.

        Returns:
            `x_{t_start}` `(B, 1, H, W)`, zero outside the mask.
        """
        return self.generate(cond, t_start, generator)

    def generator_loss(
        self,
        x0: Tensor,
        cond: Condition,
        t_start: int,
        schedule: Schedule,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Non-saturating generator loss `E softplus(-D(G(z, y), y))`.

        Args:
            x0: Clean maps `(B, 1, H, W)` (unused: the generator never sees the targets).
            cond: Conditions of the batch.
            t_start: Truncation step.
            schedule: Noise schedule (unused).
            generator: Optional random generator for `z`.

        Returns:
            Scalar loss; gradients reach the generator (the discriminator's parameters get
            gradients too: step only the generator's optimiser, or freeze D).
        """
        fake = self.generate(cond, t_start, generator)
        return F.softplus(-self.discriminator(fake, cond)).mean()

    def discriminator_loss(
        self,
        x0: Tensor,
        cond: Condition,
        t_start: int,
        schedule: Schedule,
        generator: torch.Generator | None = None,
        r1: bool = True,
    ) -> Tensor:
        """Discriminator loss `softplus(-D(real)) + softplus(D(fake))` plus the R1 penalty.

        Real samples are `x_{t_start} = q_sample(x0, t_start)` with masked noise; fake samples
        come from the generator without a graph. The R1 penalty is
        `r1_gamma / 2 * sigma^2 * E||grad_x D(real)||^2` with `sigma^2 = 1 - gamma_{t_start}`:
        the gradient with respect to the input in noise units (at `t_start = 0`, where there
        is no noise, the plain penalty `r1_gamma / 2 * E||grad_x D(real)||^2`).

        Args:
            x0: Clean maps `(B, 1, H, W)`, zero outside the mask.
            cond: Conditions of the batch.
            t_start: Truncation step.
            schedule: Noise schedule that defines `q(x_{t_start} | x_0)`.
            generator: Optional random generator (forward-process noise and `z`).
            r1: Add the R1 penalty this step (turn it off between lazy-regularisation steps).

        Returns:
            Scalar loss.
        """
        real = masked_noisy_target(x0, cond.mask, t_start, schedule, generator)
        with torch.no_grad():
            fake = self.generate(cond, t_start, generator)
        use_r1 = r1 and self.r1_gamma > 0
        real = real.detach().requires_grad_(use_r1)
        d_real = self.discriminator(real, cond)
        loss = F.softplus(-d_real).mean() + F.softplus(self.discriminator(fake, cond)).mean()
        if use_r1:
            (grad,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
            var = 1.0 - float(schedule.gammas[int(t_start)])  # the noise's variance at t_start
            var = var if var > 0 else 1.0  # t_start = 0 (clean maps): no noise unit, plain R1
            loss = loss + 0.5 * self.r1_gamma * var * grad.pow(2).flatten(1).sum(1).mean()
        return loss

    def training_stages(self, t_start: int, schedule: Schedule) -> list[Any]:
        """The adversarial stage: `critic_steps` discriminator steps, then one generator step.

        Adam with betas (0.5, 0.99) for both networks, at `lr` for the generator and
        `critic_lr` for the discriminator (`critic_steps` discriminator updates per generator
        update). The generator keeps an EMA, which is what sampling uses after training.

        Args:
            t_start: Truncation step the generator produces.
            schedule: Noise schedule that defines the real samples `q(x_{t_start} | x_0)`.

        Returns:
            One [`Stage`][mrsisr.stages.Stage] named `generator` with the discriminator as
            its critic.
        """
        from mrsisr.stages import Stage

        def g_loss(batch: Batch, generator: torch.Generator | None = None) -> Tensor:
            return self.generator_loss(batch.x0, batch.cond, t_start, schedule, generator)

        def d_loss(batch: Batch, generator: torch.Generator | None = None) -> Tensor:
            return self.discriminator_loss(batch.x0, batch.cond, t_start, schedule, generator)

        return [
            Stage(
                "generator",
                {"generator": self.generator},
                g_loss,
                lr=self.lr,
                betas=(0.5, 0.99),
                critic_modules={"discriminator": self.discriminator},
                critic_loss=d_loss,
                critic_steps=self.critic_steps,
                critic_lr=self.critic_lr,
            )
        ]

    def parts(self) -> dict[str, tuple[nn.Module, bool]]:
        """Return the networks: the generator (counted in Table 1) and the discriminator (not).

        Returns:
            `{"generator": (G, True), "discriminator": (D, False)}`.
        """
        return {"generator": (self.generator, True), "discriminator": (self.discriminator, False)}
