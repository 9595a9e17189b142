"""`patch_critic`: the conditional patch discriminator of the TDPM (GAN) initializer.

It judges a map at the truncation step `x_{t_start}` together with its conditions: input
`concat(x, mask, LR, T1, FLAIR)` (5 channels), `depth` strided 4x4 convolutions with LeakyReLU
0.2 (widths `width * 2**i`, capped at `8 * width`), then a 3x3 convolution to one logit per
patch. There is no normalisation layer, so the R1 gradient penalty (a double backward) is cheap
and well defined. It is a training-only part: Table 1 does not count it.

Examples:
    >>> import torch
    >>> from mrsisr.registries import BACKBONES
    >>> from mrsisr.types import Condition
    >>> d = BACKBONES.build("patch_critic", width=8)
    >>> ones = torch.ones(2, 1, 16, 16)
    >>> cond = Condition(mask=ones, lr=ones, t1=ones, flair=ones, scale=torch.tensor([2.0, 4.0]))
    >>> d(torch.randn(2, 1, 16, 16), cond).shape
    torch.Size([2, 1, 2, 2])
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mrsisr.errors import RecipeError
from mrsisr.registries import BACKBONES
from mrsisr.types import Condition

__all__ = ["PatchCritic"]


@BACKBONES.register("patch_critic")
class PatchCritic(nn.Module):
    """Conditional patch discriminator on (x, mask, LR, T1, FLAIR); strided convs, no norm.

    Args:
        in_channels: Channels of the judged map.
        width: Width of the first convolution.
        depth: Number of stride-2 convolutions (the logit map is `H / 2**depth` wide).
        use_mask: Feed the quality mask as a condition channel.
        use_mri: Feed the T1 and FLAIR channels.

    Raises:
        RecipeError: If `depth < 1` or `width < 1`.
    """

    def __init__(
        self,
        in_channels: int = 1,
        width: int = 64,
        depth: int = 3,
        use_mask: bool = True,
        use_mri: bool = True,
    ) -> None:
        super().__init__()
        if depth < 1 or width < 1:
            raise RecipeError(
                f"[discriminator] patch_critic needs depth >= 1 and width >= 1, "
                f"got depth={depth}, width={width}"
            )
        self.use_mask = use_mask
        self.use_mri = use_mri
        c = in_channels + int(use_mask) + 1 + 2 * int(use_mri)
        layers: list[nn.Module] = []
        for i in range(depth):
            w = width * min(2**i, 8)
            layers += [nn.Conv2d(c, w, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            c = w
        layers.append(nn.Conv2d(c, 1, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, cond: Condition) -> Tensor:
        """Score maps given their conditions.

        Args:
            x: Maps at the truncation step `(B, in_channels, H, W)`, `H, W` divisible by
                `2**depth`.
            cond: Conditions of the batch.

        Returns:
            Logits `(B, 1, H / 2**depth, W / 2**depth)`, one per patch (higher = judged real).
        """
        h = cond.channels(mask=self.use_mask, mri=self.use_mri).to(x)
        return self.net(torch.cat([x, h], dim=1))
