"""`cin`: Conditional Instance Normalisation, Eq. 6 as the paper states it.

`f' = sigma_hat(t, s) * (f - mu(f)) / sigma(f) + mu_hat(t, s)` with per-sample, per-channel
statistics `mu(f)`, `sigma(f)`. Written as `IN(f) * (1 + gamma) + beta` with
`[gamma, beta] = Linear(SiLU(e))`. The instance norm keeps a learned per-channel affine
(`w * IN(f) + b`), so that `cin` has exactly the parameters of `adagn` (the paper's counts do not
depend on the choice); the result is still of the form of Eq. 6, with
`sigma_hat = w (1 + gamma)` and `mu_hat = b (1 + gamma) + beta`.

Examples:
    >>> import torch
    >>> from mrsisr.registries import CONDITIONING
    >>> m = CONDITIONING.build("cin", channels=8, emb_dim=16)
    >>> m(torch.randn(2, 8, 4, 4), torch.randn(2, 16)).shape
    torch.Size([2, 8, 4, 4])
"""

from __future__ import annotations

from torch import nn

from mrsisr.conditioning.modulated import ModulatedNorm
from mrsisr.registries import CONDITIONING

__all__ = ["ConditionalInstanceNorm"]


@CONDITIONING.register("cin")
class ConditionalInstanceNorm(ModulatedNorm):
    """Conditional instance normalisation of (t, s) (Eq. 6 as the paper states it).

    Args:
        channels: Channels `C` of the feature map.
        emb_dim: Width of the `(t, s)` embedding.
        eps: Variance floor of the normalisation.
    """

    def __init__(self, channels: int, emb_dim: int, eps: float = 1e-5) -> None:
        super().__init__(channels, emb_dim)
        # GroupNorm with one group per channel is instance normalisation (+ affine, 2C params).
        self.norm = nn.GroupNorm(channels, channels, eps=eps, affine=True)
