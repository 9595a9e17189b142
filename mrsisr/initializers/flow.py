"""The flow initializer of FTDDM: `x_{t_start} = F^-1(z; y)` with a tempered learnable prior.

A conditional normalizing flow ([`ConditionalFlow`][mrsisr.backbones.flownet.ConditionalFlow])
models the noisy map at the truncation step, `x_{t_start} ~ q(x_{t_start} | x_0)`, given the
conditions `y` = (mask, LR, T1, FLAIR) (SPEC §4, paper Sec. 2.4). Sampling draws
`z = mu_z + tau_f * sigma_z * eps` and inverts the flow once (1 network evaluation).

Training (Eqs. 8-10) minimises the negative log-likelihood of `x_{t_start}` plus a guide loss
that pulls the flow's most likely output (`z = mu_z`, i.e. `tau_f = 0`) towards the clean map:

`L = NLL(x_{t_start}) + lambda * [(1 - alpha) * L1 + alpha * (1 - MS-SSIM)](F^-1(mu_z; y), x_0)`

with `alpha = 0.84`, `lambda = 10`, MS-SSIM computed after bicubic upsampling to 192 x 192 as in
the authors' code (pytorch-msssim needs images wider than 160 pixels for its five scales).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mrsisr.diffusion import randn
from mrsisr.errors import RecipeError
from mrsisr.losses import guide_loss
from mrsisr.registries import INITIALIZERS
from mrsisr.types import Batch, Condition, Schedule

__all__ = ["FlowInitializer", "guide_loss", "masked_noisy_target"]


def masked_noisy_target(
    x0: Tensor,
    mask: Tensor,
    t_start: int,
    schedule: Schedule,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Draw `x_{t_start} = q_sample(x0, t_start)` with noise multiplied by the mask.

    Args:
        x0: Clean maps `(B, 1, H, W)`.
        mask: Quality mask `(B, 1, H, W)`.
        t_start: Truncation step (paper indexing).
        schedule: Noise schedule.
        generator: Optional random generator.

    Returns:
        `x_{t_start}` `(B, 1, H, W)`, zero outside the mask.
    """
    noise = randn(x0.shape, x0, generator) * mask
    t = torch.full((x0.shape[0],), int(t_start), dtype=torch.long, device=x0.device)
    return schedule.q_sample(x0, t, noise)


@INITIALIZERS.register("flow")
class FlowInitializer(nn.Module):
    """Conditional normalizing flow that draws `x_{t_start}` at temperature `tau_f` (FTDDM).

    Args:
        flow: The flow network, e.g. a [`ConditionalFlow`][mrsisr.backbones.flownet.ConditionalFlow]
            with 4 condition channels; it must provide `sample(cond_img, tau, generator)`,
            `decode(z, cond_img)`, `sample_latent(batch_size, tau, generator)` and
            `nll_bits_per_dim(x, cond_img)`.
        tau_f: Sampling temperature of the prior (0.9 in the paper; 0 gives the prior mean and a
            deterministic start).
        guide_weight: `lambda`, weight of the guide loss.
        alpha: Weight of MS-SSIM against L1 in the guide loss.
        guide_size: Side for the bicubic upsampling before MS-SSIM (192 as the authors).
        mask_channel: Feed the mask to the flow's condition (the Table 3 ablation drops it).
        mri: Feed T1 and FLAIR to the flow's condition (the Table 3 ablation drops them).

    Raises:
        RecipeError: If `tau_f` is negative, or the flow's `cond_channels` differs from the
            number of condition channels the switches feed it.
    """

    nfe = 1

    def __init__(
        self,
        flow: nn.Module,
        tau_f: float = 0.9,
        guide_weight: float = 10.0,
        alpha: float = 0.84,
        guide_size: int | None = 192,
        mask_channel: bool = True,
        mri: bool = True,
    ) -> None:
        super().__init__()
        if tau_f < 0:
            raise RecipeError(f"[initializer] tau_f must be >= 0, got {tau_f!r}")
        fed = int(mask_channel) + 1 + 2 * int(mri)  # mask, LR, T1 + FLAIR
        declared = getattr(flow, "cond_channels", fed)
        if declared != fed:
            raise RecipeError(
                f"[initializer.flow] cond_channels = {declared}, but the initializer feeds it "
                f"{fed} (mask_channel = {str(mask_channel).lower()}, mri = {str(mri).lower()}); "
                f"set initializer.flow.cond_channels = {fed}"
            )
        self.flow = flow
        self.tau_f = float(tau_f)
        self.guide_weight = float(guide_weight)
        self.alpha = float(alpha)
        self.guide_size = guide_size
        self.mask_channel = mask_channel
        self.mri = mri

    def cond_image(self, cond: Condition) -> Tensor:
        """Condition image fed to the flow.

        Args:
            cond: Conditions of the batch.

        Returns:
            `(B, C, H, W)`: mask, LR, T1, FLAIR (fewer with the ablation switches).
        """
        return cond.channels(mask=self.mask_channel, mri=self.mri)

    @torch.no_grad()
    def sample(
        self,
        cond: Condition,
        t_start: int,
        schedule: Schedule,
        *,
        generator: torch.Generator | None = None,
        tau_f: float | None = None,
    ) -> Tensor:
        """Draw `x_{t_start} = F^-1(mu_z + tau_f sigma_z eps; y)`, masked (Algorithm 1, lines 1-2).

        The flow is trained for one truncation step; `t_start` and `schedule` are part of the
        initializer contract and are not used to sample.

        Args:
            cond: Conditions of the batch.
            t_start: Truncation step the flow was trained for.
            schedule: Noise schedule (unused).
            generator: Optional random generator.
            tau_f: Temperature for this call; `None` uses the initializer's `tau_f`.

        Returns:
            `x_{t_start}` `(B, 1, H, W)`, zero outside the mask.
        """
        tau = self.tau_f if tau_f is None else float(tau_f)
        x = self.flow.sample(self.cond_image(cond), tau=tau, generator=generator)
        return x * cond.mask

    def loss(
        self,
        x0: Tensor,
        cond: Condition,
        t_start: int,
        schedule: Schedule,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Training loss: NLL of `x_{t_start}` in bits/dim + `lambda` * guide loss at `z = mu_z`.

        Args:
            x0: Clean maps `(B, 1, H, W)` in [0, 1], zero outside the mask.
            cond: Conditions of the batch.
            t_start: Truncation step whose noisy maps the flow models.
            schedule: Noise schedule that defines `q(x_{t_start} | x_0)`.
            generator: Optional random generator for the forward-process noise.

        Returns:
            Scalar loss (Eq. 10).
        """
        cond_img = self.cond_image(cond)
        x_t = masked_noisy_target(x0, cond.mask, t_start, schedule, generator)
        nll = self.flow.nll_bits_per_dim(x_t, cond_img).mean()  # Eq. 8
        z_mean = self.flow.sample_latent(x0.shape[0], tau=0.0)
        x_hat = self.flow.decode(z_mean, cond_img) * cond.mask
        guide = guide_loss(x_hat, x0, alpha=self.alpha, guide_size=self.guide_size)  # Eq. 9
        return nll + self.guide_weight * guide  # Eq. 10

    def training_stages(self, t_start: int, schedule: Schedule) -> list[Any]:
        """The flow's training stage (run after the denoiser's by the diffusion pipeline).

        Adam lr 1e-4, betas (0.5, 0.9), as the authors; no EMA (the authors use the raw flow).

        Args:
            t_start: Truncation step whose noisy maps the flow models.
            schedule: Noise schedule that defines `q(x_{t_start} | x_0)`.

        Returns:
            One [`Stage`][mrsisr.stages.Stage] named `flow`.
        """
        from mrsisr.stages import Stage

        def loss(batch: Batch, generator: torch.Generator | None = None) -> Tensor:
            return self.loss(batch.x0, batch.cond, t_start, schedule, generator)

        return [Stage("flow", {"flow": self.flow}, loss, betas=(0.5, 0.9), ema=False)]

    def parts(self) -> dict[str, tuple[nn.Module, bool]]:
        """Return the trainable networks: the flow, counted in Table 1.

        Returns:
            `{"flow": (flow, True)}`.
        """
        return {"flow": (self.flow, True)}
