"""Embeddings of the diffusion timestep `t` and the upscaling factor `s` (SPEC §3, Eq. 6).

The denoising UNet turns `(t, s)` into one vector `e = concat(MLP_t(sinusoid_64(t)), MLP_s(s))`
(the authors' code); every residual block then maps `e` to a per-channel scale and shift through a
conditioning module ([`cin`][mrsisr.conditioning.cin.ConditionalInstanceNorm] or
[`adagn`][mrsisr.conditioning.adagn.AdaptiveGroupNorm]).

Examples:
    >>> import torch
    >>> from mrsisr.conditioning.embeddings import TimestepEmbedding, ScaleEmbedding
    >>> TimestepEmbedding(64, 256)(torch.tensor([1, 500])).shape
    torch.Size([2, 256])
    >>> sum(p.numel() for p in ScaleEmbedding(256).parameters())
    132096
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["ScaleEmbedding", "TimestepEmbedding", "timestep_embedding"]


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of (possibly non-integer) timesteps, as in improved-diffusion.

    Args:
        t: Timesteps `(B,)`, integer or float.
        dim: Embedding width (even or odd; an odd width is zero-padded).
        max_period: Longest period of the sinusoids.

    Returns:
        `(B, dim)` float32 embedding `[cos(t f_k), sin(t f_k)]`, `f_k = max_period^(-k / (dim/2))`.
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )
    args = t.reshape(-1, 1).float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class TimestepEmbedding(nn.Module):
    """`MLP_t`: sinusoid(t) -> Linear -> SiLU -> Linear (the authors' `time_embed`).

    Args:
        sinusoid_dim: Width of the sinusoidal embedding (the UNet's base width, 64 in the paper).
        emb_dim: Output width (4 x base width, 256 in the paper).
    """

    def __init__(self, sinusoid_dim: int = 64, emb_dim: int = 256) -> None:
        super().__init__()
        self.sinusoid_dim = sinusoid_dim
        self.mlp = nn.Sequential(
            nn.Linear(sinusoid_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )

    def forward(self, t: Tensor) -> Tensor:
        """Embed timesteps.

        Args:
            t: Timesteps `(B,)` in the paper's indexing (1..T).

        Returns:
            `(B, emb_dim)`.
        """
        return self.mlp(timestep_embedding(t, self.sinusoid_dim).to(self.mlp[0].weight.dtype))


class ScaleEmbedding(nn.Module):
    """`MLP_s`: the upscaling factor s -> Linear(1, E) -> SiLU -> Linear -> SiLU -> Linear.

    With the per-block Linear of the conditioning module this is the paper's "4-layer MLP with
    SiLUs" (Eq. 6).

    Args:
        emb_dim: Output width (256 in the paper).
    """

    def __init__(self, emb_dim: int = 256) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(1, emb_dim),
            nn.SiLU(),
            nn.Linear(emb_dim, emb_dim),
            nn.SiLU(),
            nn.Linear(emb_dim, emb_dim),
        )

    def forward(self, s: Tensor) -> Tensor:
        """Embed upscaling factors.

        Args:
            s: Upscaling factors `(B,)` (e.g. 2.0 to 8.0).

        Returns:
            `(B, emb_dim)`.
        """
        return self.mlp(s.reshape(-1, 1).to(self.mlp[0].weight.dtype))
