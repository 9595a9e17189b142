"""DDIM sampling for mrsisr, shipped as a separate package to show how plugins work.

mrsisr finds this sampler through the entry point declared in this package's `pyproject.toml`:

```toml
[project.entry-points."mrsisr.samplers"]
ddim = "mrsisr_ddim:DDIMSampler"
```
"""

from __future__ import annotations

import torch
from torch import Tensor

from mrsisr.types import Condition, Denoiser, Schedule

__all__ = ["DDIMSampler"]


class DDIMSampler:
    """DDIM (Song et al. 2021) on evenly spaced steps; deterministic when eta = 0.

    Like every mrsisr sampler it starts from any image at any timestep, so it works with Gaussian
    noise at `t_start = T` and with a GAN or flow initializer at `t_start = T_trunc`.

    Args:
        steps: Number of denoiser evaluations (at most `t_start`).
        eta: 0 gives the deterministic DDIM ODE sampler, 1 the ancestral DDPM variance.
        clip_x0: Clip each x̂0 to [-1, 1] before the update, as the ancestral sampler does.
    """

    def __init__(self, steps: int = 50, eta: float = 0.0, clip_x0: bool = True) -> None:
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        if eta < 0:
            raise ValueError(f"eta must be non-negative, got {eta}")
        self.steps = int(steps)
        self.eta = float(eta)
        self.clip_x0 = bool(clip_x0)

    def timesteps(self, t_start: int) -> list[int]:
        """Return the visited timesteps, from `t_start` down to 0 inclusive.

        Args:
            t_start: The timestep of the starting image.

        Returns:
            Strictly decreasing integers, `t_start` first and 0 last.
        """
        k = min(self.steps, t_start)
        grid = torch.linspace(float(t_start), 0.0, k + 1).round().long().tolist()
        return sorted(set(grid), reverse=True)

    def nfe(self, t_start: int) -> int:
        """Number of denoiser evaluations when starting at `t_start`.

        Args:
            t_start: The timestep of the starting image.

        Returns:
            `min(steps, t_start)`.
        """
        return len(self.timesteps(t_start)) - 1

    @torch.no_grad()
    def __call__(
        self,
        denoiser: Denoiser,
        x_start: Tensor,
        t_start: int,
        cond: Condition,
        schedule: Schedule,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Run DDIM from `x_start` at `t_start` to an x0 estimate.

        Args:
            denoiser: ε-predictor called as `denoiser(x_t, t, cond)`.
            x_start: Image at `t_start`, `(B, 1, H, W)`.
            t_start: Its timestep.
            cond: Conditions; the result is multiplied by `cond.mask`.
            schedule: Noise schedule with float64 `gammas` indexed by the paper's t.
            generator: Random generator for the noise when `eta > 0`.

        Returns:
            x0 estimates `(B, 1, H, W)`, masked and clamped to [0, 1].
        """
        mask = cond.mask
        gammas = schedule.gammas.to(device=x_start.device, dtype=torch.float64)
        x = x_start.to(torch.float64) * mask
        ts = self.timesteps(t_start)
        for t, t_prev in zip(ts[:-1], ts[1:]):
            t_batch = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
            eps = denoiser(x.to(x_start.dtype), t_batch, cond).to(torch.float64)
            g, g_prev = gammas[t], gammas[t_prev]
            x0 = (x - (1 - g).sqrt() * eps) / g.sqrt()
            if self.clip_x0:
                x0 = x0.clamp(-1.0, 1.0)
                eps = (x - g.sqrt() * x0) / (1 - g).sqrt()
            sigma = self.eta * ((1 - g_prev) / (1 - g) * (1 - g / g_prev)).clamp(min=0).sqrt()
            x = g_prev.sqrt() * x0 + (1 - g_prev - sigma**2).clamp(min=0).sqrt() * eps
            if self.eta > 0 and t_prev > 0:
                noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device="cpu")
                x = x + sigma * noise.to(x.device)
            x = x * mask
        return (x.clamp(0.0, 1.0) * mask).to(x_start.dtype)
