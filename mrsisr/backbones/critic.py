"""The conditional WGAN-GP critic of MUNet-FS-cWGAN and its training losses (Dong 2022b).

The critic scores a map together with its conditions: input `[LR, T1, FLAIR, x]` on the 64x64 grid,
four strided convolutions (kernel 4, stride 2, no bias) with instance norm and LeakyReLU 0.2 at
widths 32/64/128/256 (64 -> 4 px), then Linear(256*4*4 -> 16)-LReLU-Linear(16 -> 1). The authors'
critic is the 3-D version on 192x192x3 patches (kernels 4x4x{3,1}, strides 2x2x{3,1}, so its last
feature map is 12x12 and its first linear layer 256*12*12 wide; 1.28M parameters); ours has
755,745 at the default widths. The critic is a training-only part: Table 1 does not count it.

It is called as `critic(x, cond)`, like every critic and discriminator of mrsisr; its WGAN-GP
training losses are in [`mrsisr.losses`][mrsisr.losses].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mrsisr.registries import BACKBONES
from mrsisr.types import Condition

__all__ = ["WGANCritic"]


@BACKBONES.register("wgan_critic")
class WGANCritic(nn.Module):
    """Conditional WGAN critic: strided convs + IN + LReLU on [LR, T1, FLAIR, x], then 2 linears.

    Args:
        in_channels: Input channels: the 3 conditions plus the scored map.
        widths: Output widths of the strided convolutions (each halves the size).
        hidden: Width of the hidden linear layer.
        image_size: Side of the square input (64).
    """

    def __init__(
        self,
        in_channels: int = 4,
        widths: Sequence[int] = (32, 64, 128, 256),
        hidden: int = 16,
        image_size: int = 64,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for w in widths:
            layers += [
                nn.Conv2d(c, w, 4, stride=2, padding=1, bias=False),
                nn.InstanceNorm2d(w),
                nn.LeakyReLU(0.2),
            ]
            c = w
        self.features = nn.Sequential(*layers)
        side = image_size // 2 ** len(widths)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c * side * side, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, 1),
        )

    def forward(self, x: Tensor, cond: Condition) -> Tensor:
        """Score maps given their conditions.

        Args:
            x: Maps to score (super-resolved or high-resolution) `(B, 1, H, W)`.
            cond: Conditions; uses `lr`, `t1`, `flair` `(B, 1, H, W)`.

        Returns:
            Critic values `(B,)` (higher = judged more real).
        """
        h = torch.cat([cond.lr, cond.t1, cond.flair, x], dim=1)
        return self.head(self.features(h)).squeeze(1)
