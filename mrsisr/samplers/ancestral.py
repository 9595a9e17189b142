"""`ancestral`: the DDPM reverse chain of Eq. 12 with temperature tau_d, from any `t_start`.

Each step computes `x0_hat` from the denoiser's noise prediction, optionally clips it to [-1, 1]
(the authors' code does), takes the posterior mean of `q(x_{t-1} | x_t, x0_hat)` (equal to Eq. 12
when nothing is clipped) and adds masked noise `sigma_t z_t`, `z_t ~ N(0, tau_d I)`, for `t > 1`.
The final sample is multiplied by the mask and clamped to [0, 1].

Starting at `t_start = T` from Gaussian noise is DDPM; starting at `t_start = T_trunc` from an
initializer's output is a truncated model (TDPM, FTDDM). NFE = `t_start`.

Examples:
    >>> import torch
    >>> from mrsisr.registries import SAMPLERS
    >>> from mrsisr.schedules import CosineSchedule
    >>> from mrsisr.types import Condition
    >>> ones = torch.ones(2, 1, 8, 8)
    >>> cond = Condition(ones, ones, ones, ones, torch.tensor([2.0, 4.0]))
    >>> zero_eps = lambda x, t, c: torch.zeros_like(x)
    >>> sampler = SAMPLERS.build("ancestral", tau_d=0.9)
    >>> x0 = sampler(zero_eps, torch.randn(2, 1, 8, 8), 100, cond, CosineSchedule())
    >>> x0.shape, sampler.nfe(100), float(x0.min()) >= 0.0
    (torch.Size([2, 1, 8, 8]), 100, True)
"""

from __future__ import annotations

import torch
from torch import Tensor

from mrsisr.diffusion import Progress, masked_eps, posterior_step, predict_x0, randn, track
from mrsisr.errors import RecipeError
from mrsisr.registries import SAMPLERS
from mrsisr.types import Condition, Denoiser, Schedule

__all__ = ["AncestralSampler", "run_chain"]


def run_chain(
    denoiser: Denoiser,
    x_start: Tensor,
    timesteps: list[int],
    cond: Condition,
    schedule: Schedule,
    *,
    tau_d: float,
    variance: str,
    clip_denoised: bool,
    generator: torch.Generator | None,
    progress: bool | Progress = False,
) -> Tensor:
    """Run ancestral steps along a decreasing list of timesteps, ending at `x_0`.

    Each listed `t` is visited once: the denoiser is called at `t` and the chain jumps to the next
    listed timestep (0 after the last), with `beta = 1 - gamma_t / gamma_next` (the respaced
    beta). With every timestep listed this is plain Eq. 12.

    Args:
        denoiser: The epsilon-predicting network.
        x_start: `x_{timesteps[0]}`, `(B, 1, H, W)`.
        timesteps: Strictly decreasing timesteps in 1..T.
        cond: Conditions of the batch.
        schedule: The noise schedule.
        tau_d: Temperature of the step noise.
        variance: `"small"` (posterior variance, the paper) or `"large"` (beta).
        clip_denoised: Clip `x0_hat` to [-1, 1] before each step.
        generator: Optional random generator.
        progress: Progress reporting, see [`track`][mrsisr.diffusion.track].

    Returns:
        The final `x_0` (neither masked nor clamped; the caller does that).
    """
    gammas = schedule.gammas
    mask = cond.mask.to(x_start)
    x = x_start * mask
    nxt = timesteps[1:] + [0]
    for t, t_prev in track(zip(timesteps, nxt, strict=True), len(timesteps), progress, "ancestral"):
        eps = masked_eps(denoiser, x, t, cond)
        x0_hat = predict_x0(eps, x, t, schedule)
        if clip_denoised:
            x0_hat = x0_hat.clamp(-1.0, 1.0)
        noise = randn(x.shape, x, generator) * mask if t_prev > 0 else None  # z_t = 0 at t = 1
        x = posterior_step(
            x, x0_hat, float(gammas[t]), float(gammas[t_prev]), noise, tau=tau_d, variance=variance
        )
    return x


def _check(tau_d: float, variance: str) -> None:
    if tau_d < 0:
        raise RecipeError(f"[sampler] tau_d must be >= 0, got {tau_d}")
    if variance not in ("small", "large"):
        raise RecipeError(f"[sampler] variance must be 'small' or 'large', got {variance!r}")


def _check_start(t_start: int, schedule: Schedule) -> int:
    t_start = int(t_start)
    if not 1 <= t_start <= schedule.T:
        raise ValueError(f"t_start must be in [1, {schedule.T}], got {t_start}")
    return t_start


@SAMPLERS.register("ancestral")
class AncestralSampler:
    """DDPM ancestral sampling (Eq. 12) with temperature tau_d; NFE = t_start.

    Args:
        tau_d: Temperature of the step noise, `z_t ~ N(0, tau_d I)` (0.9 in the paper; 1 is
            exact DDPM).
        variance: `"small"`: `sigma_t^2 = (1 - gamma_{t-1}) / (1 - gamma_t) beta_t` as the paper
            writes; `"large"`: `sigma_t^2 = beta_t` (improved-diffusion's fixed-large default).
        clip_denoised: Clip `x0_hat` to [-1, 1] at every step, as the authors' code does.
        clamp_output: Clamp the final sample to [0, 1] (after masking), as the authors' code does.
        progress: `True` shows a progress bar; a callable `progress(done, total)` is called after
            each step.
    """

    def __init__(
        self,
        tau_d: float = 0.9,
        variance: str = "small",
        clip_denoised: bool = True,
        clamp_output: bool = True,
        progress: bool | Progress = False,
    ) -> None:
        _check(tau_d, variance)
        self.tau_d = float(tau_d)
        self.variance = variance
        self.clip_denoised = clip_denoised
        self.clamp_output = clamp_output
        self.progress = progress

    def timesteps(self, t_start: int) -> list[int]:
        """The timesteps at which the denoiser is called.

        Args:
            t_start: Starting timestep.

        Returns:
            `[t_start, t_start - 1, ..., 1]`.
        """
        return list(range(int(t_start), 0, -1))

    def nfe(self, t_start: int) -> int:
        """Denoiser evaluations per call.

        Args:
            t_start: Starting timestep.

        Returns:
            `t_start`.
        """
        return len(self.timesteps(t_start))

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
        """Denoise `x_start` from `t_start` down to `x_0`.

        Args:
            denoiser: The epsilon-predicting network.
            x_start: `x_{t_start}`, `(B, 1, H, W)` (Gaussian noise or an initializer's output).
            t_start: Its timestep, in 1..T.
            cond: Conditions of the batch.
            schedule: The noise schedule the denoiser was trained with.
            generator: Optional random generator for the step noise.

        Returns:
            `x_0` `(B, 1, H, W)`, masked (and clamped to [0, 1] if `clamp_output`).
        """
        t_start = _check_start(t_start, schedule)
        x = run_chain(
            denoiser,
            x_start,
            self.timesteps(t_start),
            cond,
            schedule,
            tau_d=self.tau_d,
            variance=self.variance,
            clip_denoised=self.clip_denoised,
            generator=generator,
            progress=self.progress,
        )
        x = x * cond.mask.to(x)
        return x.clamp(0.0, 1.0) if self.clamp_output else x

    def __repr__(self) -> str:
        return f"AncestralSampler(tau_d={self.tau_d}, variance={self.variance!r})"
