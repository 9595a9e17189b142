"""`adagn`: GroupNorm(32) scale-shift conditioning, as the authors' code implements Eq. 6.

improved-diffusion's `use_scale_shift_norm=True` path: `GN_32(f) * (1 + gamma) + beta` with
`[gamma, beta] = Linear(SiLU(e))` per residual block. The paper describes this as conditional
instance normalisation ([`cin`][mrsisr.conditioning.cin]); the two have the same parameter count.

Examples:
    >>> import torch
    >>> from mrsisr.registries import CONDITIONING
    >>> m = CONDITIONING.build("adagn", channels=64, emb_dim=256)
    >>> m(torch.randn(2, 64, 8, 8), torch.randn(2, 256)).shape
    torch.Size([2, 64, 8, 8])
"""

from __future__ import annotations

from torch import nn

from mrsisr.conditioning.modulated import ModulatedNorm
from mrsisr.registries import CONDITIONING

__all__ = ["AdaptiveGroupNorm", "group_norm"]


def group_norm(channels: int, groups: int = 32, eps: float = 1e-5) -> nn.GroupNorm:
    """GroupNorm with up to `groups` groups (fewer when `channels` is small or not divisible).

    The paper's widths (64..256) always get 32 groups; tiny test models with e.g. 8 channels get
    the largest divisor of `channels` not above `groups`.

    Args:
        channels: Number of channels.
        groups: Preferred number of groups.
        eps: Variance floor.

    Returns:
        An affine `nn.GroupNorm`.
    """
    g = min(groups, channels)
    while channels % g:
        g -= 1
    return nn.GroupNorm(g, channels, eps=eps)


@CONDITIONING.register("adagn")
class AdaptiveGroupNorm(ModulatedNorm):
    """GroupNorm(32) scale-shift of (t, s), as the authors' code implements Eq. 6.

    Args:
        channels: Channels `C` of the feature map.
        emb_dim: Width of the `(t, s)` embedding.
        groups: Number of GroupNorm groups.
        eps: Variance floor of the normalisation.
    """

    def __init__(self, channels: int, emb_dim: int, groups: int = 32, eps: float = 1e-5) -> None:
        super().__init__(channels, emb_dim)
        self.norm = group_norm(channels, groups, eps)
