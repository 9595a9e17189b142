"""`respace`: ancestral sampling on K evenly spaced timesteps (improved-diffusion respacing).

The kept timesteps follow improved-diffusion's `space_timesteps(n, "K")` on the range
`1..t_start`: `t_i = round(i (t_start - 1) / (K - 1)) + 1` for `i = 0..K-1`, so `t_start` and 1
are always kept. The step from a kept `t` to the next kept `t'` uses the beta rebuilt from the
kept cumulative products, `beta = 1 - gamma_t / gamma_t'`, and the network still sees the
original `t`. NFE = K (or `t_start` if smaller).

With `t_start = T` this is improved-diffusion's `SpacedDiffusion`. (The authors' code counts
`T_trunc` in respaced steps instead; here `t_start` is always a timestep of the original chain,
so truncation and respacing compose without re-training.)

Examples:
    >>> from mrsisr.samplers.respace import RespacedSampler
    >>> s = RespacedSampler(steps=10)
    >>> s.timesteps(1000)
    [1000, 889, 778, 667, 556, 445, 334, 223, 112, 1]
    >>> s.nfe(1000), s.nfe(5)
    (10, 5)
"""

from __future__ import annotations

from mrsisr.diffusion import Progress
from mrsisr.errors import RecipeError
from mrsisr.registries import SAMPLERS
from mrsisr.samplers.ancestral import AncestralSampler

__all__ = ["RespacedSampler", "space_timesteps"]


def space_timesteps(t_start: int, steps: int) -> list[int]:
    """Evenly spaced timesteps in `1..t_start`, improved-diffusion style, decreasing.

    Args:
        t_start: Largest timestep (kept).
        steps: Number of timesteps to keep; more than `t_start` keeps them all.

    Returns:
        Strictly decreasing list starting at `t_start` and ending at 1.
    """
    if steps >= t_start:
        return list(range(t_start, 0, -1))
    if steps == 1:
        return [t_start]
    stride = (t_start - 1) / (steps - 1)
    kept = sorted({round(i * stride) + 1 for i in range(steps)}, reverse=True)
    return kept


@SAMPLERS.register("respace")
class RespacedSampler(AncestralSampler):
    """Ancestral sampling on K evenly spaced timesteps, betas rebuilt (improved-diffusion); NFE = K.

    Everything but the visited timesteps is [`AncestralSampler`][mrsisr.samplers.ancestral.AncestralSampler]:
    the shared chain rebuilds each step's beta from the kept cumulative products.

    Args:
        steps: Number of kept timesteps K (100 for the paper's "DDPM with respacing").
        tau_d: Temperature of the step noise.
        variance: `"small"` (posterior variance of the respaced chain) or `"large"` (respaced beta).
        clip_denoised: Clip `x0_hat` to [-1, 1] at every step (the authors' code).
        clamp_output: Clamp the final sample to [0, 1] (after masking).
        progress: `True` shows a progress bar; a callable `progress(done, total)` is called after
            each step.
    """

    def __init__(
        self,
        steps: int = 100,
        tau_d: float = 0.9,
        variance: str = "small",
        clip_denoised: bool = True,
        clamp_output: bool = True,
        progress: bool | Progress = False,
    ) -> None:
        if int(steps) != steps or steps < 1:
            raise RecipeError(f"[sampler] steps must be a positive integer, got {steps!r}")
        super().__init__(tau_d, variance, clip_denoised, clamp_output, progress)
        self.steps = int(steps)

    def timesteps(self, t_start: int) -> list[int]:
        """The kept timesteps (where the denoiser is called).

        Args:
            t_start: Starting timestep.

        Returns:
            Decreasing kept timesteps from `t_start` to 1.
        """
        return space_timesteps(int(t_start), self.steps)

    def __repr__(self) -> str:
        return f"RespacedSampler(steps={self.steps}, tau_d={self.tau_d})"
