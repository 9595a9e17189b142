"""Noise schedules in the paper's indexing (SPEC §3).

A schedule holds float64 `betas` and `gammas` (the cumulative products of `1 - beta`, written
`gamma_t` in the paper and `alpha_bar_t` in Ho et al. 2020) of length `T + 1`, indexed by the
paper's timestep `t`: `betas[0] = 0` and `gammas[0] = 1`, so index 0 is the clean map `x_0`.

Examples:
    >>> import torch
    >>> from mrsisr.schedules import CosineSchedule
    >>> s = CosineSchedule(T=1000)
    >>> s.gammas.dtype, len(s.gammas), float(s.gammas[0])
    (torch.float64, 1001, 1.0)
    >>> bool(s.betas[1:].max() <= 0.999)
    True
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mrsisr.errors import RecipeError
from mrsisr.registries import SCHEDULES

__all__ = ["CosineSchedule", "DiscreteSchedule", "cosine_betas"]


def cosine_betas(T: int, max_beta: float = 0.999, s: float = 0.008) -> Tensor:
    """Cosine betas of Nichol & Dhariwal (2021), in float64, in the paper's indexing.

    `gamma(u) = cos^2(((u + s) / (1 + s)) * pi / 2)` for `u = t / T`, and
    `beta_t = min(1 - gamma(t / T) / gamma((t - 1) / T), max_beta)` for `t = 1..T` (this is
    improved-diffusion's `betas_for_alpha_bar`, shifted by one so that index `t` is the paper's
    `t`).

    Args:
        T: Number of diffusion steps.
        max_beta: Upper clip of every beta (0.999 avoids a singular last step).
        s: Small offset that keeps `beta_1` from being vanishingly small.

    Returns:
        `(T + 1,)` float64 betas with `betas[0] = 0`.
    """

    def gamma(u: float) -> float:
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    betas = [0.0] + [
        min(1.0 - gamma(t / T) / gamma((t - 1) / T), max_beta) for t in range(1, T + 1)
    ]
    return torch.tensor(betas, dtype=torch.float64)


class DiscreteSchedule:
    """A variance-preserving discrete schedule given by its betas (paper indexing).

    Args:
        betas: `(T + 1,)` betas with `betas[0] = 0`; converted to float64.

    Attributes:
        T: Number of diffusion steps.
        betas: `(T + 1,)` float64.
        gammas: `(T + 1,)` float64 cumulative products of `1 - betas`, `gammas[0] = 1`.
    """

    def __init__(self, betas: Tensor) -> None:
        betas = torch.as_tensor(betas, dtype=torch.float64).clone()
        if betas.ndim != 1 or len(betas) < 2 or float(betas[0]) != 0.0:
            raise ValueError("betas must be a 1-D tensor of length T + 1 with betas[0] = 0")
        if not bool(((betas[1:] > 0) & (betas[1:] < 1)).all()):
            raise ValueError("betas[1:] must lie in (0, 1)")
        self.T = len(betas) - 1
        self.betas = betas
        self.gammas = torch.cumprod(1.0 - betas, dim=0)  # Eq. 2: gamma_t = prod_{s<=t} (1 - beta_s)

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """Draw `x_t = sqrt(gamma_t) x_0 + sqrt(1 - gamma_t) eps` (Eq. 2).

        Args:
            x0: Clean maps `(B, C, H, W)`.
            t: Integer timesteps `(B,)` in `0..T` (0 returns `x0`).
            noise: Standard normal noise shaped like `x0` (mask it first if the maps are masked).

        Returns:
            `x_t`, shaped and typed like `x0`.
        """
        g = self.gammas.to(x0.device)[t.long().to(x0.device)]
        shape = (-1,) + (1,) * (x0.ndim - 1)
        a = g.sqrt().to(x0.dtype).view(shape)
        b = (1.0 - g).sqrt().to(x0.dtype).view(shape)
        return a * x0 + b * noise

    def log_snr(self, t: Tensor | int) -> Tensor:
        """Half log signal-to-noise ratio `lambda_t = log(sqrt(gamma_t) / sqrt(1 - gamma_t))`.

        Args:
            t: Integer timestep(s) in `1..T` (`t = 0` gives `+inf`).

        Returns:
            float64 `lambda_t`, shaped like `t`.
        """
        g = self.gammas[torch.as_tensor(t, dtype=torch.long)]
        return 0.5 * (torch.log(g) - torch.log1p(-g))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(T={self.T})"


@SCHEDULES.register("cosine")
class CosineSchedule(DiscreteSchedule):
    """Cosine noise schedule (Nichol & Dhariwal 2021), T = 1000, betas clipped at 0.999, float64.

    Args:
        T: Number of diffusion steps.
        max_beta: Upper clip of every beta.

    Raises:
        RecipeError: If `T < 1` or `max_beta` is not in (0, 1).
    """

    def __init__(self, T: int = 1000, max_beta: float = 0.999) -> None:
        if int(T) != T or T < 1:
            raise RecipeError(f"[schedule] T must be a positive integer, got {T!r}")
        if not 0.0 < max_beta < 1.0:
            raise RecipeError(f"[schedule] max_beta must be in (0, 1), got {max_beta!r}")
        self.max_beta = float(max_beta)
        super().__init__(cosine_betas(int(T), self.max_beta))

    def __repr__(self) -> str:
        return f"CosineSchedule(T={self.T}, max_beta={self.max_beta})"
