"""`unet`: the ADM-style denoising UNet of SPEC §3, conditioned on timestep and upscaling factor.

The structure follows openai/improved-diffusion `unet.py` (MIT licence, Nichol & Dhariwal 2021):
residual blocks with GroupNorm + SiLU and a scale-shift conditioning of the second norm,
multi-head self-attention at chosen resolutions, strided-conv down-sampling, nearest + conv
up-sampling, a Res-Attn-Res middle and zero-initialised output convolutions. The code here is
written for mrsisr.

Input is `concat(x_t, mask, LR, T1, FLAIR)` (5 channels), output the noise `eps` (1 channel).
The `(t, s)` embedding is `e = concat(MLP_t(sinusoid(t)), MLP_s(s))` (the authors' code);
`use_scale=False` drops `MLP_s` (the DDPM baseline, which has no s-embedding).

At paper size (the defaults) the network has 30,301,761 parameters without the s-embedding and
32,989,761 with it (Table 1; SPEC §6).

The same class also serves as a GAN generator `G(z, y)` for truncated models (TDPM): it is this
network called at a fixed timestep, `G(z, y) = unet(z, t_fixed, cond)`, with `z ~ N(0, I)` in
place of `x_t`. Nothing special is needed.

Examples:
    >>> import torch
    >>> from mrsisr.registries import BACKBONES
    >>> from mrsisr.types import Condition
    >>> net = BACKBONES.build("unet", model_channels=8, channel_mult=(1, 2), num_res_blocks=1,
    ...                       attention_resolutions=(8,), num_heads=2, image_size=16)
    >>> ones = torch.ones(2, 1, 16, 16)
    >>> cond = Condition(mask=ones, lr=ones, t1=ones, flair=ones, scale=torch.tensor([2.0, 4.0]))
    >>> net(torch.randn(2, 1, 16, 16), torch.tensor([1, 100]), cond).shape
    torch.Size([2, 1, 16, 16])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mrsisr.conditioning.adagn import group_norm
from mrsisr.conditioning.embeddings import ScaleEmbedding, TimestepEmbedding
from mrsisr.errors import RecipeError
from mrsisr.registries import BACKBONES, CONDITIONING
from mrsisr.types import Condition

__all__ = ["AttentionBlock", "Downsample", "ResBlock", "UNet", "Upsample"]


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """Residual block: GN-SiLU-conv, conditioned norm (Eq. 6)-SiLU-dropout-zero conv, skip.

    Args:
        channels: Input channels.
        out_channels: Output channels.
        emb_dim: Width of the `(t, s)` embedding.
        conditioning: CONDITIONING entry name of the modulated norm (`"adagn"`, `"cin"`).
        dropout: Dropout probability before the last convolution.
    """

    def __init__(
        self, channels: int, out_channels: int, emb_dim: int, conditioning: str, dropout: float
    ) -> None:
        super().__init__()
        self.in_layers = nn.Sequential(
            group_norm(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1)
        )
        self.cond_norm = CONDITIONING.build(conditioning, channels=out_channels, emb_dim=emb_dim)
        self.out_layers = nn.Sequential(
            nn.SiLU(),
            nn.Dropout(dropout),
            _zero(nn.Conv2d(out_channels, out_channels, 3, padding=1)),
        )
        self.skip = (
            nn.Identity() if channels == out_channels else nn.Conv2d(channels, out_channels, 1)
        )

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        """Apply the block.

        Args:
            x: `(B, channels, H, W)`.
            emb: `(B, emb_dim)`.

        Returns:
            `(B, out_channels, H, W)`.
        """
        h = self.in_layers(x)
        h = self.out_layers(self.cond_norm(h, emb))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over all pixels, with a zero-initialised output projection.

    Args:
        channels: Channels (must be divisible by `num_heads`).
        num_heads: Number of attention heads.
    """

    def __init__(self, channels: int, num_heads: int) -> None:
        super().__init__()
        if channels % num_heads:
            raise RecipeError(
                f"[denoiser] num_heads={num_heads} must divide every attention width ({channels})"
            )
        self.num_heads = num_heads
        self.norm = group_norm(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = _zero(nn.Conv1d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        """Apply attention with a residual connection.

        Args:
            x: `(B, C, H, W)`.

        Returns:
            `(B, C, H, W)`.
        """
        b, c, hh, ww = x.shape
        qkv = self.qkv(self.norm(x).reshape(b, c, hh * ww))  # (B, 3C, N)
        q, k, v = qkv.reshape(b, 3, self.num_heads, c // self.num_heads, hh * ww).unbind(1)
        out = F.scaled_dot_product_attention(
            q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2)
        )  # (B, heads, N, C/heads)
        out = out.transpose(-1, -2).reshape(b, c, hh * ww)
        return x + self.proj_out(out).reshape(b, c, hh, ww)


class Downsample(nn.Module):
    """Strided 3x3 convolution halving the resolution.

    Args:
        channels: Channels in and out.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """Down-sample `(B, C, H, W)` to `(B, C, H/2, W/2)`.

        Args:
            x: `(B, C, H, W)`.

        Returns:
            `(B, C, H/2, W/2)`.
        """
        return self.op(x)


class Upsample(nn.Module):
    """Nearest-neighbour up-sampling by 2 followed by a 3x3 convolution.

    Args:
        channels: Channels in and out.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """Up-sample `(B, C, H, W)` to `(B, C, 2H, 2W)`.

        Args:
            x: `(B, C, H, W)`.

        Returns:
            `(B, C, 2H, 2W)`.
        """
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class _Step(nn.Module):
    """A ResBlock optionally followed by attention, and/or a resampling layer."""

    def __init__(self, *layers: nn.Module) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


def _input_names(use_mask: bool, use_mri: bool) -> tuple[str, ...]:
    mask = ("mask",) if use_mask else ()
    return ("x_t", *mask, "lr", *(("t1", "flair") if use_mri else ()))


@BACKBONES.register("unet")
class UNet(nn.Module):
    """ADM-style denoising UNet eps_theta(y, x_t, t, s) (SPEC §3); 30.3M params at paper size.

    Args:
        model_channels: Base width (64 in the paper).
        channel_mult: Width multiplier per resolution level; one down-sampling between levels.
        num_res_blocks: Residual blocks per level on the way down (one more on the way up).
        attention_resolutions: Feature-map sizes (pixels, for `image_size` inputs) that get
            self-attention after each residual block; `(16, 8)` in the paper.
        num_heads: Attention heads.
        conditioning: CONDITIONING entry for the `(t, s)` modulated norm: `"adagn"` (GroupNorm
            scale-shift, the authors' code) or `"cin"` (instance norm, Eq. 6 as printed).
        use_scale: Embed the upscaling factor `s` and concatenate it to the timestep embedding
            (FTDDM); `False` gives the DDPM baseline's network.
        use_mask: Feed the quality mask as an input channel (the Table 3 ablation drops it).
        use_mri: Feed the T1 and FLAIR channels (the Table 3 ablation drops them).
        image_size: Input size the attention resolutions refer to (64).
        out_channels: Output channels (1: the noise `eps`).
        dropout: Dropout in the residual blocks (0 in the paper).

    Raises:
        RecipeError: For an unknown or unusable conditioning entry or inconsistent sizes.
    """

    def __init__(
        self,
        model_channels: int = 64,
        channel_mult: Sequence[int] = (1, 2, 3, 4),
        num_res_blocks: int = 3,
        attention_resolutions: Sequence[int] = (16, 8),
        num_heads: int = 4,
        conditioning: str = "adagn",
        use_scale: bool = True,
        use_mask: bool = True,
        use_mri: bool = True,
        image_size: int = 64,
        out_channels: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        target = CONDITIONING.get(conditioning)
        if getattr(target, "kind", None) != "norm":
            usable = [
                n
                for n in CONDITIONING.names()
                if getattr(CONDITIONING.get(n), "kind", None) == "norm"
            ]
            raise RecipeError(
                f"[denoiser] conditioning '{conditioning}' is not a modulated norm the UNet can "
                f"use; choose one of {', '.join(usable)}"
            )
        if image_size % 2 ** (len(channel_mult) - 1):
            raise RecipeError(
                f"[denoiser] image_size={image_size} must be divisible by "
                f"2**(len(channel_mult) - 1) = {2 ** (len(channel_mult) - 1)}"
            )
        self.model_channels = model_channels
        self.channel_mult = tuple(channel_mult)
        self.num_res_blocks = num_res_blocks
        self.attention_resolutions = tuple(attention_resolutions)
        self.conditioning = conditioning
        self.use_scale = use_scale
        self.use_mask = use_mask
        self.use_mri = use_mri
        self.in_channels = 1 + int(use_mask) + 1 + 2 * int(use_mri)
        self.image_size = image_size

        t_dim = 4 * model_channels
        self.time_embed = TimestepEmbedding(model_channels, t_dim)
        self.scale_embed = ScaleEmbedding(t_dim) if use_scale else None
        emb_dim = 2 * t_dim if use_scale else t_dim

        def res(cin: int, cout: int) -> ResBlock:
            return ResBlock(cin, cout, emb_dim, conditioning, dropout)

        self.input_blocks = nn.ModuleList(
            [_Step(nn.Conv2d(self.in_channels, model_channels, 3, padding=1))]
        )
        skips = [model_channels]
        ch, size = model_channels, image_size
        for level, mult in enumerate(self.channel_mult):
            for _ in range(num_res_blocks):
                layers: list[nn.Module] = [res(ch, mult * model_channels)]
                ch = mult * model_channels
                if size in self.attention_resolutions:
                    layers.append(AttentionBlock(ch, num_heads))
                self.input_blocks.append(_Step(*layers))
                skips.append(ch)
            if level != len(self.channel_mult) - 1:
                self.input_blocks.append(_Step(Downsample(ch)))
                skips.append(ch)
                size //= 2

        self.middle_block = _Step(res(ch, ch), AttentionBlock(ch, num_heads), res(ch, ch))

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(self.channel_mult))):
            for i in range(num_res_blocks + 1):
                layers = [res(ch + skips.pop(), mult * model_channels)]
                ch = mult * model_channels
                if size in self.attention_resolutions:
                    layers.append(AttentionBlock(ch, num_heads))
                if level and i == num_res_blocks:
                    layers.append(Upsample(ch))
                    size *= 2
                self.output_blocks.append(_Step(*layers))

        self.out = nn.Sequential(
            group_norm(ch), nn.SiLU(), _zero(nn.Conv2d(ch, out_channels, 3, padding=1))
        )

    @property
    def input_names(self) -> tuple[str, ...]:
        """The input channels in order: `x_t`, then `mask`, `lr`, `t1`, `flair` as used."""
        return _input_names(self.use_mask, self.use_mri)

    def adapt_state_dict(self, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Rearrange a UNet's weights that read other input channels into this one's layout.

        The input channels are determined by their number (5: all, 4: no mask, 3: no MRIs, 2:
        neither), so the first convolution's columns can be matched by name: a channel this UNet
        reads and the source did not starts at zero, one the source read and this UNet does not
        is dropped. This lets a UNet without the mask or the MRIs (Table 3) start from FTDDM's.

        Args:
            state: A UNet state dict (e.g. from a weights file).

        Returns:
            The state dict with the first convolution's weight in this UNet's input layout
            (unchanged when the layouts already agree or the source is not a UNet's).
        """
        key = "input_blocks.0.layers.0.weight"
        out = dict(state)
        weight = out.get(key)
        layouts = {
            len(n): n for n in (_input_names(m, r) for m in (True, False) for r in (True, False))
        }
        if weight is None or weight.dim() != 4 or weight.shape[1] not in layouts:
            return out
        source = layouts[weight.shape[1]]
        if source == self.input_names:
            return out
        cols = [
            weight[:, source.index(n)] if n in source else torch.zeros_like(weight[:, 0])
            for n in self.input_names
        ]
        out[key] = torch.stack(cols, dim=1)
        return out

    def embed(self, t: Tensor, scale: Tensor | None) -> Tensor:
        """The `(t, s)` embedding `e = concat(MLP_t(sinusoid(t)), MLP_s(s))`.

        Args:
            t: Timesteps `(B,)` (paper indexing, 1..T; any real value works).
            scale: Upscaling factors `(B,)`; ignored when `use_scale` is off.

        Returns:
            `(B, E)` with `E = 8 * model_channels` (or `4 *` without the s-embedding).
        """
        emb = self.time_embed(t)
        if self.scale_embed is not None:
            if scale is None:
                raise ValueError("this UNet embeds the upscaling factor: pass cond.scale")
            emb = torch.cat([emb, self.scale_embed(scale.to(emb.device))], dim=1)
        return emb

    def forward(self, x_t: Tensor, t: Tensor, cond: Condition) -> Tensor:
        """Predict the noise in `x_t` (the Denoiser protocol).

        Args:
            x_t: Noisy maps `(B, 1, H, W)`; `H, W` divisible by `2**(len(channel_mult) - 1)`.
            t: Timesteps `(B,)` in 1..T (a scalar or 0-d tensor is broadcast).
            cond: The condition; its image channels are concatenated to `x_t`.

        Returns:
            `eps` prediction `(B, out_channels, H, W)` (not masked; callers multiply by the mask).
        """
        t = torch.as_tensor(t, device=x_t.device)
        if t.ndim == 0:
            t = t.expand(x_t.shape[0])
        h = torch.cat([x_t, cond.channels(mask=self.use_mask, mri=self.use_mri).to(x_t)], dim=1)
        emb = self.embed(t, cond.scale if self.use_scale else None)
        hs = []
        for block in self.input_blocks:
            h = block(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)
