"""`gaussian`: the plain diffusion start, `x_{t_start} ~ N(0, I)`, masked (no network, NFE 0).

With `t_start = T` this is DDPM. With `t_start < T` it is a (poor) truncated start, useful as the
baseline that the GAN and flow initializers improve on.

Examples:
    >>> import torch
    >>> from mrsisr.registries import INITIALIZERS
    >>> from mrsisr.schedules import CosineSchedule
    >>> from mrsisr.types import Condition
    >>> mask = torch.ones(2, 1, 8, 8)
    >>> mask[:, :, :2] = 0
    >>> cond = Condition(mask, mask, mask, mask, torch.tensor([2.0, 4.0]))
    >>> init = INITIALIZERS.build("gaussian")
    >>> x = init.sample(cond, 1000, CosineSchedule())
    >>> x.shape, init.nfe, bool((x[:, :, :2] == 0).all())
    (torch.Size([2, 1, 8, 8]), 0, True)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mrsisr.diffusion import randn
from mrsisr.registries import INITIALIZERS
from mrsisr.types import Condition, Schedule

__all__ = ["GaussianInitializer"]


@INITIALIZERS.register("gaussian")
class GaussianInitializer(nn.Module):
    """Masked standard Gaussian noise N(0, I) as the chain's start (DDPM); no parameters, NFE 0."""

    nfe: int = 0

    def sample(
        self,
        cond: Condition,
        t_start: int,
        schedule: Schedule,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Draw the starting image.

        Args:
            cond: Conditions of the batch (only the mask is used).
            t_start: Starting timestep (unused: the noise does not depend on it).
            schedule: The noise schedule (unused).
            generator: Optional random generator.

        Returns:
            `z * mask`, `z ~ N(0, I)`, `(B, 1, H, W)`.
        """
        mask = cond.mask if cond.mask.is_floating_point() else cond.mask.float()
        return randn(mask.shape, mask, generator) * mask
