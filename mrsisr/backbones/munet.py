"""MUNet-FS: the multi-encoder UNet with Filter Scaling and adjustable sharpness (Dong 2022b).

A one-step super-resolution network (SPEC §5): two encoders, one for `[LR, T1]` and one for
`[LR, FLAIR]` (widths f, 2f, 4f, 8f and a 16f bottleneck), a shared decoder with skips from both,
every block convolution filter-scaled by the resolution value (and metabolite), the sharpness
CIN on `lambda_adv` after each of them, a sigmoid output and k-space data consistency.

**2-D here, 3-D in the original.** The authors' network is 3-D: it runs on 192x192x3 MRI
patches (the LR map trilinearly resized to the MRI grid), pools (2,2,3) once and then (2,2,1),
uses 3x3x3 kernels at full resolution and 3x3x1 deeper down, and average-pools the 192x192x3
output back to 64x64. Ours runs on the 64x64 map grid of SPEC §1 (T1 and FLAIR already resampled
to it), pools 2x2 four times (64 -> 4), uses 3x3 kernels everywhere and needs no output pooling.
The deeper 3x3x1 kernels have 9 taps like our 3x3 ones; only the full-resolution convolutions
(the first block of each encoder, the last decoder block and the up-convolution before it) lose
their third kernel axis, 27 taps -> 9. That is 38,016 weights fewer at f = 16: 27,468,973
parameters against the authors' 27,506,989 (-0.14%). The filter-scaling heads, which do not
depend on the kernel, are identical.

Examples:
    >>> import torch
    >>> from mrsisr.backbones.munet import MUNet
    >>> from mrsisr.types import Condition
    >>> net = MUNet(features=2, latent_dim=4)
    >>> ones = torch.ones(2, 1, 64, 64)
    >>> cond = Condition(ones, ones * 0.5, ones, ones, torch.tensor([2.0, 4.0]))
    >>> net(cond, lambda_adv=0.0).shape
    torch.Size([2, 1, 64, 64])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mrsisr.conditioning.filter_scaling import FilterScaledConv2d, mlp4, resolution_value
from mrsisr.constants import METABOLITES
from mrsisr.errors import DataError, RecipeError
from mrsisr.kspace import block_mask as kspace_block_mask
from mrsisr.kspace import fft2c, ifft2c
from mrsisr.registries import BACKBONES, CONDITIONING
from mrsisr.types import Condition

__all__ = [
    "DC_MODES",
    "METABOLITES",
    "MUNet",
    "SharpnessNorm",
    "data_consistency",
    "metabolite_codes",
]

# The embedding uses mrsisr.constants.METABOLITES order, the codes that Condition.metabolite carries.

_ALIASES = {"cr+pcr": "tCr", "gpc+pch": "tCho"}


def metabolite_codes(names: Sequence[str], device: torch.device | str | None = None) -> Tensor:
    """Map metabolite names to the integer codes of the metabolite embedding.

    Args:
        names: One name per sample, e.g. `Batch.metabolite` (case-insensitive; the authors'
            `Cr+PCr` and `GPC+PCh` are accepted for tCr and tCho).
        device: Device of the result.

    Returns:
        Long tensor `(B,)` of indices into [`METABOLITES`][mrsisr.backbones.munet.METABOLITES].

    Raises:
        DataError: A name is not one of the seven metabolites.
    """
    lookup = {m.lower(): i for i, m in enumerate(METABOLITES)}
    codes = []
    for name in names:
        key = _ALIASES.get(name.lower(), name).lower()
        if key not in lookup:
            raise DataError(
                f"unknown metabolite {name!r}: MUNet's embedding knows {', '.join(METABOLITES)}"
            )
        codes.append(lookup[key])
    return torch.tensor(codes, dtype=torch.long, device=device)


DC_MODES = ("magnitude", "real", "none")
"""Data-consistency modes of [`data_consistency`][mrsisr.backbones.munet.data_consistency]."""


def data_consistency(x: Tensor, lr: Tensor, half: Tensor, mode: str = "magnitude") -> Tensor:
    """Replace the central k-space block of `x` with that of the LR input.

    The k-space of the network output keeps its high frequencies; its central block (the part the
    LR map was made from, SPEC §1) is taken from the LR map's k-space.

    - `"magnitude"` (the authors' choice): replace the `2d x 2d` block `[c - d, c + d)` and return
      `|ifft|`. The replaced block breaks the Hermitian symmetry at its edge, so the image is
      complex; the magnitude makes it real and non-negative but changes the k-space a little,
      so the output's central block equals the LR's only approximately (exactly before the
      magnitude).
    - `"real"`: replace the Hermitian-closed block `[c - d, c + d]`, so the image is real up to
      rounding, and return its real part: the output's central block equals the LR's exactly
      (to float tolerance); values can dip slightly below 0 and are clamped downstream.
    - `"none"`: return `x` unchanged.

    Args:
        x: Network output `(B, 1, H, W)`.
        lr: Low-resolution map on the same grid `(B, 1, H, W)`.
        half: Half LR size `d = L / 2` per sample, `(B,)` integer-valued.
        mode: One of [`DC_MODES`][mrsisr.backbones.munet.DC_MODES].

    Returns:
        `(B, 1, H, W)` real.
    """
    if mode == "none":
        return x
    block = kspace_block_mask(half, x.shape[-1], symmetric=(mode == "real"))
    img = ifft2c(torch.where(block, fft2c(lr), fft2c(x)))
    return img.real if mode == "real" else img.abs()


class SharpnessNorm(nn.Module):
    """Conditional instance norm on the adversarial weight: `IN(x) * (1 + gamma) + beta`.

    `[gamma, beta]` come from a 4-layer MLP (width `2L`) of `lambda_adv` and a linear layer. The
    gamma bias starts at 1, so the initial scale is 2, as in the authors' model. Changing
    `lambda_adv` at test time moves the output between the fidelity end (0) and sharper,
    GAN-like maps: the sharpness knob.

    Args:
        channels: Number of feature channels `C`.
        latent_dim: `L`; the MLP is `2L` wide (64 in the paper).
    """

    def __init__(self, channels: int, latent_dim: int = 32) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.mapping = mlp4(1, 2 * latent_dim)
        self.style = nn.Linear(2 * latent_dim, 2 * channels)
        with torch.no_grad():
            self.style.bias[:channels] = 1.0
            self.style.bias[channels:] = 0.0

    def forward(self, x: Tensor, lambda_adv: Tensor) -> Tensor:
        """Normalise and modulate.

        Args:
            x: Features `(B, C, H, W)`.
            lambda_adv: Adversarial weight per sample `(B,)`.

        Returns:
            `(B, C, H, W)`.
        """
        style = self.style(self.mapping(lambda_adv.reshape(-1, 1).to(x.dtype)))
        gamma, beta = style[:, :, None, None].chunk(2, dim=1)
        return self.norm(x) * (1.0 + gamma) + beta


class _Block(nn.Module):
    """Two [filter-scaled conv -> sharpness CIN -> PReLU] layers."""

    def __init__(
        self, c_in: int, c_out: int, conv: type[FilterScaledConv2d], latent: int, n_met: int
    ) -> None:
        super().__init__()
        self.conv1 = conv(c_in, c_out, 3, latent_dim=latent, num_metabolites=n_met)
        self.norm1 = SharpnessNorm(c_out, latent)
        self.act1 = nn.PReLU(c_out)
        self.conv2 = conv(c_out, c_out, 3, latent_dim=latent, num_metabolites=n_met)
        self.norm2 = SharpnessNorm(c_out, latent)
        self.act2 = nn.PReLU(c_out)

    def forward(self, x: Tensor, r: Tensor, met: Tensor | None, lam: Tensor) -> Tensor:
        x = self.act1(self.norm1(self.conv1(x, r, met), lam))
        return self.act2(self.norm2(self.conv2(x, r, met), lam))


class _Encoder(nn.Module):
    """Blocks at widths f, 2f, 4f, 8f with 2x2 max pooling between them, then a 16f bottleneck."""

    def __init__(self, c_in: int, f: int, conv: type[FilterScaledConv2d], latent: int, n_met: int):
        super().__init__()
        widths = [f, 2 * f, 4 * f, 8 * f, 16 * f]
        ins = [c_in] + widths[:-1]
        self.blocks = nn.ModuleList(
            _Block(a, b, conv, latent, n_met) for a, b in zip(ins, widths, strict=True)
        )

    def forward(self, x: Tensor, r: Tensor, met: Tensor | None, lam: Tensor) -> list[Tensor]:
        feats = []
        for i, block in enumerate(self.blocks):
            x = block(x if i == 0 else F.max_pool2d(x, 2), r, met, lam)
            feats.append(x)
        return feats  # 4 skips and the bottleneck


@BACKBONES.register("munet")
class MUNet(nn.Module):
    """MUNet-FS: two-encoder UNet with Filter Scaling, sharpness CIN and data consistency.

    Args:
        features: Base width `f` (widths f, 2f, 4f, 8f, 16f); 16 gives the paper's 27.5M.
        latent_dim: Width `L` of the Filter Scaling MLPs (the sharpness MLPs are `2L` wide).
        num_metabolites: Size of the metabolite embedding of the `_Met` variant (7, the paper's
            Table 1 model); 0 drops the metabolite input.
        conditioning: CONDITIONING entry that builds the block convolutions; a
            [`FilterScaledConv2d`][mrsisr.conditioning.filter_scaling.FilterScaledConv2d] or a
            subclass (`"filter_scaling"`).
        data_consistency: k-space data consistency of the output, one of
            [`DC_MODES`][mrsisr.backbones.munet.DC_MODES]: `"magnitude"` (the authors'),
            `"real"` (exactly consistent) or `"none"`.
    """

    def __init__(
        self,
        features: int = 16,
        latent_dim: int = 32,
        num_metabolites: int = 7,
        conditioning: str = "filter_scaling",
        data_consistency: str = "magnitude",
    ) -> None:
        super().__init__()
        if data_consistency not in DC_MODES:
            raise RecipeError(
                f"munet: data_consistency {data_consistency!r} is not one of {', '.join(DC_MODES)}"
            )
        conv = CONDITIONING.get(conditioning)
        if getattr(conv, "kind", None) != "conv":
            raise RecipeError(
                f"munet: conditioning {conditioning!r} is not a scaled convolution (kind 'conv'); "
                'use conditioning = "filter_scaling"'
            )
        f = features
        self.num_metabolites = num_metabolites
        self.dc_mode = data_consistency
        self.encoder_t1 = _Encoder(2, f, conv, latent_dim, num_metabolites)
        self.encoder_flair = _Encoder(2, f, conv, latent_dim, num_metabolites)
        # Decoder level i: upsample, plain conv (width halves), concat both encoders' skips, block.
        self.up_convs = nn.ModuleList()
        self.dec_blocks = nn.ModuleList()
        for w in (8 * f, 4 * f, 2 * f, f):
            # The first level takes both bottlenecks (2 x 16f), later ones the previous block (2w).
            self.up_convs.append(nn.Conv2d(32 * f if w == 8 * f else 2 * w, w, 3, padding=1))
            self.dec_blocks.append(_Block(3 * w, w, conv, latent_dim, num_metabolites))
        self.out_conv = nn.Conv2d(f, 1, 1)

    def forward(
        self,
        cond: Condition,
        lambda_adv: float | Tensor = 0.0,
        metabolite: Tensor | Sequence[str] | None = None,
    ) -> Tensor:
        """Predict the high-resolution map in one network evaluation.

        Args:
            cond: Conditions; uses `lr`, `t1`, `flair`, `mask` `(B, 1, H, W)` and `scale` `(B,)`.
                `H = W` must be divisible by 16.
            lambda_adv: Sharpness knob: the adversarial weight, a float or `(B,)`.
            metabolite: Metabolite names or codes `(B,)`, for the `_Met` variant; `None` uses
                `cond.metabolite`, and feeds a zero embedding if that is `None` too.

        Returns:
            `x0_hat` `(B, 1, H, W)`, data-consistent and multiplied by the mask.
        """
        lr = cond.lr
        b, size = lr.shape[0], lr.shape[-1]
        r = resolution_value(cond.scale.reshape(-1).to(lr.device), size)
        if r.numel() == 1 and b > 1:
            r = r.expand(b)
        lam = torch.as_tensor(lambda_adv, dtype=lr.dtype, device=lr.device).reshape(-1).expand(b)
        met = None
        if metabolite is None:
            metabolite = cond.metabolite
        if self.num_metabolites > 0 and metabolite is not None:
            met = (
                metabolite.reshape(-1).to(lr.device)
                if isinstance(metabolite, Tensor)
                else metabolite_codes(metabolite, lr.device)
            )
            if met.numel() == 1 and b > 1:
                met = met.expand(b)
        enc_a = self.encoder_t1(torch.cat([lr, cond.t1], 1), r, met, lam)
        enc_b = self.encoder_flair(torch.cat([lr, cond.flair], 1), r, met, lam)
        x = torch.cat([enc_a[-1], enc_b[-1]], 1)
        for level, (up, block) in enumerate(zip(self.up_convs, self.dec_blocks, strict=True)):
            x = up(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True))
            skip = 3 - level
            x = block(torch.cat([enc_a[skip], enc_b[skip], x], 1), r, met, lam)
        x = torch.sigmoid(self.out_conv(x))
        x = data_consistency(x, lr, torch.round(r).to(torch.long), self.dc_mode)
        return x * cond.mask
