"""Shared base of the normalisation-modulation conditioning entries (`cin`, `adagn`).

A modulated norm normalises a feature map `f` and modulates it with a per-channel scale and shift
computed from the `(t, s)` embedding `e` (Eq. 6): `f' = norm(f) * (1 + gamma) + beta`, with
`[gamma, beta] = Linear(SiLU(e))`. The entries differ only in the normalisation.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["ModulatedNorm"]


class ModulatedNorm(nn.Module):
    """Normalisation followed by `(1 + gamma) * . + beta` with `[gamma, beta] = Linear(SiLU(e))`.

    Subclasses set `self.norm` (a module with `2 * channels` affine parameters, so all entries have
    the same parameter count). The [`unet`][mrsisr.backbones.unet.UNet] backbone takes any
    CONDITIONING entry that declares `kind = "norm"` and is called as `norm(channels, emb_dim)`,
    then `norm(h, emb)`: this class or a plugin's own.

    Attributes:
        kind: `"norm"`, the capability the UNet looks for.

    Args:
        channels: Channels `C` of the feature map.
        emb_dim: Width of the `(t, s)` embedding `e`.
    """

    kind = "norm"

    def __init__(self, channels: int, emb_dim: int) -> None:
        super().__init__()
        self.channels = channels
        self.emb_dim = emb_dim
        self.norm: nn.Module = nn.Identity()
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, 2 * channels))

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        """Normalise and modulate (Eq. 6).

        Args:
            h: Feature map `(B, C, H, W)`.
            emb: Embedding `(B, emb_dim)`.

        Returns:
            `(B, C, H, W)`: `norm(h) * (1 + gamma) + beta`.
        """
        gamma, beta = self.emb_layers(emb).to(h.dtype)[:, :, None, None].chunk(2, dim=1)
        return self.norm(h) * (1 + gamma) + beta
