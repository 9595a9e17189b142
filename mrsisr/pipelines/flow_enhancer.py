"""The Flow Enhancer pipeline: a conditional flow sharpening a frozen MUNet's output (Dong 2022c).

A conditional normalizing flow ([`ConditionalFlow`][mrsisr.backbones.flownet.ConditionalFlow],
the same family as FTDDM's initializer, SPEC §4-5) models the high-resolution map `x0` itself,
conditioned on four channels: the output of a frozen MUNet pre-network, LR, T1 and FLAIR. At the
paper's size (width 192, 12 steps on each of 4 levels) the flow has 37,604,620 parameters, the
37.6M of Table 1; the pre-network is listed as a part and not counted.

Sampling draws `z = mu + tau * sigma * eps` from the learnable prior and inverts the flow once.
The temperature `tau` is the sharpness knob: 0 gives the most likely (smoothest) map, larger
values sharper and noisier ones; the authors test at 0.8.

**NFE.** One flow inversion per map, as the paper's Table 1 reports (NFE 1). The pre-network is
a second, much cheaper forward pass (MUNet, one evaluation) that the paper does not count
separately; `nfe` follows the paper.

**Training** ([`loss`][mrsisr.pipelines.flow_enhancer.FlowEnhancerPipeline.loss]), after the pre-network
is trained (e.g. `munet_fs_cwgan`'s network, reused by path, or
[`pre_network_loss`][mrsisr.pipelines.flow_enhancer.FlowEnhancerPipeline.pre_network_loss]):

`L = NLL(x0 | y) + 10 * guide(F^-1(mu; y), x0) + 10 * DC(F^-1(mu + tau' sigma eps; y), LR)`

with the guide loss `0.16 L1 + 0.84 (1 - MS-SSIM)` at `z = mu` (MS-SSIM after bicubic
upsampling to 192, as FTDDM's flow) and the DC loss the L1 distance between the sample's and
the LR map's central k-space block, at a random temperature `tau' ~ U[0, 1)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from mrsisr.conditioning.filter_scaling import resolution_value
from mrsisr.kspace import block_mask, fft2c
from mrsisr.losses import guide_loss, reconstruction_loss
from mrsisr.pipelines.base import Progress, SuperResolveMixin, report
from mrsisr.registries import PIPELINES
from mrsisr.stages import Stage
from mrsisr.types import Batch, Condition

__all__ = ["FlowEnhancerPipeline", "kspace_l1"]


def kspace_l1(x: Tensor, lr: Tensor, scale: Tensor) -> Tensor:
    """Mean L1 distance between the central k-space blocks of `x` and of the LR map.

    Args:
        x: Maps `(B, 1, H, W)`.
        lr: Low-resolution maps on the same grid `(B, 1, H, W)`.
        scale: Upscaling factors `s` `(B,)`; the block is `[c - d, c + d)`, `d = H / (2 s)`.

    Returns:
        Scalar: mean `|F(x) - F(lr)|` over each sample's block.
    """
    half = torch.round(resolution_value(scale.reshape(-1).to(x.device), x.shape[-1])).long()
    if half.numel() == 1 and x.shape[0] > 1:
        half = half.expand(x.shape[0])
    block = block_mask(half, x.shape[-1]).expand_as(x)
    diff = (fft2c(x) - fft2c(lr)).abs()
    return diff[block].mean()


@PIPELINES.register("flow_enhancer")
class FlowEnhancerPipeline(SuperResolveMixin, nn.Module):
    """Flow Enhancer: a conditional flow on [frozen MUNet output, LR, T1, FLAIR]; NFE 1.

    Args:
        flow: Conditional flow with 4 condition channels (`conditional_flow`).
        pre_network: Frozen one-step predictor called as `pre_network(cond, lambda_adv=0.0,
            metabolite=...)` (`munet`); never updated by the flow's loss.
        tau: Sampling temperature (0.8, the authors' test setting).
        guide_weight: Weight of the guide loss (10).
        dc_weight: Weight of the k-space data-consistency loss (10).
        alpha: Weight of MS-SSIM in the guide loss (0.84).
        guide_size: Side for the bicubic upsampling before MS-SSIM (192).
        consistency: Optional data-consistency projection (a `[consistency]` table, e.g.
            `type = "kspace"`); `None` or `none` leaves the method as published. See
            [`mrsisr.consistency`][mrsisr.consistency].
    """

    nfe: int = 1

    def __init__(
        self,
        flow: nn.Module,
        pre_network: nn.Module,
        tau: float = 0.8,
        guide_weight: float = 10.0,
        dc_weight: float = 10.0,
        alpha: float = 0.84,
        guide_size: int | None = 192,
        consistency: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if getattr(flow, "cond_channels", 4) != 4:
            raise ValueError(
                "flow_enhancer: the flow needs cond_channels = 4 "
                "(pre-network output, LR, T1, FLAIR)"
            )
        self.flow = flow
        self.pre_network = pre_network
        self.tau = float(tau)
        self.guide_weight = float(guide_weight)
        self.dc_weight = float(dc_weight)
        self.alpha = float(alpha)
        self.guide_size = guide_size
        self.consistency = consistency

    def cond_image(
        self, cond: Condition, metabolite: Tensor | Sequence[str] | None = None
    ) -> Tensor:
        """Condition image of the flow: the frozen pre-network's output, LR, T1, FLAIR.

        Args:
            cond: Conditions of the batch.
            metabolite: Metabolite names or codes for a pre-network with a metabolite input.

        Returns:
            `(B, 4, H, W)`.
        """
        with torch.no_grad():
            pre = self.pre_network(cond, lambda_adv=0.0, metabolite=metabolite)
            pre = pre.clamp(0.0, 1.0) * cond.mask
        return torch.cat([pre, cond.lr, cond.t1, cond.flair], dim=1)

    @torch.no_grad()
    def sample(
        self,
        cond: Condition,
        generator: torch.Generator | None = None,
        *,
        tau: float | None = None,
        metabolite: Tensor | Sequence[str] | None = None,
        progress: Progress | None = None,
    ) -> Tensor:
        """Super-resolve a batch: one flow inversion at temperature `tau`.

        Args:
            cond: Conditions of the batch.
            generator: Optional random generator for the latent.
            tau: Temperature for this call; `None` uses the pipeline's `tau`.
            metabolite: Metabolite names or codes for the pre-network.
            progress: Called with `1` after the network evaluation.

        Returns:
            `x0` samples `(B, 1, H, W)`, masked and clamped to [0, 1].
        """
        t = self.tau if tau is None else float(tau)
        from mrsisr.consistency import finish

        x = self.flow.sample(self.cond_image(cond, metabolite), tau=t, generator=generator)
        report(progress, 1)
        return finish(x, cond, self.consistency)

    def forward(self, cond: Condition, generator: torch.Generator | None = None) -> Tensor:
        """Same as [`sample`][mrsisr.pipelines.flow_enhancer.FlowEnhancerPipeline.sample].

        Args:
            cond: Conditions of the batch.
            generator: Optional random generator.

        Returns:
            `x0` samples `(B, 1, H, W)`.
        """
        return self.sample(cond, generator=generator)

    def training_stages(self) -> list[Any]:
        """Training stages, in order: the pre-network, then the flow with the pre-network frozen.

        Both with Adam lr 1e-4, betas (0.5, 0.9), as the authors. A pre-network trained before
        (e.g. `munet_fs_cwgan`'s network) can be loaded by path instead of stage one.

        Returns:
            Two [`Stage`][mrsisr.stages.Stage]s.
        """
        return [
            Stage(
                "pre_network",
                {"pre_network": self.pre_network},
                self.pre_network_loss,
                betas=(0.5, 0.9),
            ),
            Stage(
                "flow",
                {"flow": self.flow},
                self.loss,
                betas=(0.5, 0.9),
                frozen={"pre_network": self.pre_network},
            ),
        ]

    def parts(self) -> dict[str, tuple[nn.Module, bool]]:
        """Return the networks and whether Table 1 counts them.

        Returns:
            `{"flow": (flow, True), "pre_network": (pre_network, False)}`.
        """
        return {"flow": (self.flow, True), "pre_network": (self.pre_network, False)}

    def loss(self, batch: Batch, generator: torch.Generator | None = None) -> Tensor:
        """Flow loss: NLL (bits/dim) + guide loss at `z = mu` + k-space DC loss at `tau' < 1`.

        Args:
            batch: Training batch (`x0`, `cond`, `metabolite`).
            generator: Optional random generator (temperature and latent noise).

        Returns:
            Scalar loss; gradients reach the flow only.
        """
        cond, x0 = batch.cond, batch.x0
        met = batch.metabolite if batch.metabolite else None
        y = self.cond_image(cond, met)
        nll = self.flow.nll_bits_per_dim(x0, y).mean()
        b = x0.shape[0]
        x_mu = self.flow.decode(self.flow.sample_latent(b, tau=0.0), y) * cond.mask
        guide = guide_loss(x_mu, x0, alpha=self.alpha, guide_size=self.guide_size)
        tau_r = float(torch.rand((), generator=generator))
        z = self.flow.sample_latent(b, tau=tau_r, generator=generator)
        x_r = self.flow.decode(z, y) * cond.mask
        dc = kspace_l1(x_r, cond.lr, cond.scale)
        return nll + self.guide_weight * guide + self.dc_weight * dc

    def pre_network_loss(self, batch: Batch, generator: torch.Generator | None = None) -> Tensor:
        """Loss to train the pre-network first: `0.16 L1 + 0.84 (1 - MS-SSIM)`.

        Args:
            batch: Training batch.
            generator: Unused (the loss is deterministic); part of the loss contract.

        Returns:
            Scalar loss; gradients reach the pre-network only.
        """
        met = batch.metabolite if batch.metabolite else None
        x0_hat = self.pre_network(batch.cond, lambda_adv=0.0, metabolite=met)
        return reconstruction_loss(x0_hat, batch.x0)
