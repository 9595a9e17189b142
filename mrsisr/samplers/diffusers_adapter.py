"""`diffusers`: any of diffusers' schedulers as an mrsisr sampler, from any start, truncated too.

The adapter builds the named scheduler class on the **truncated** chain: its training betas are
the schedule's first `t_start` betas (`num_train_timesteps = t_start`), so the scheduler's own
"pure noise" end is exactly the sampler's start `x_{t_start}`, and `set_timesteps(steps)` spaces
its steps over `t_start … 1` with no further bookkeeping. diffusers counts timesteps from 0:
its `t` is this project's `t - 1`, and the denoiser is called at `round(t) + 1`.

Every scheduler then works from a truncated start (an FTDDM flow draw, a TDPM GAN draw):

- variance-preserving schedulers (`DDPMScheduler`, `DDIMScheduler`, `DPMSolverMultistepScheduler`,
  `UniPCMultistepScheduler`, `DEISMultistepScheduler`, `PNDMScheduler`, …) take `x_t` as it is;
- sigma-parameterised ones (`EulerDiscreteScheduler`, `HeunDiscreteScheduler`,
  `EulerAncestralDiscreteScheduler`, `LMSDiscreteScheduler`, `KDPM2DiscreteScheduler`, …) work on
  `x_t / sqrt(gamma_t)`: the adapter converts the start with the scheduler's own
  `scale_model_input`, which also hands the denoiser the variance-preserving input at each step.

`timestep_spacing = "trailing"` is the default (the first step is the start itself); any other
constructor argument goes in `options`. Like the other samplers, the sample is multiplied by the
mask after every step and the output is clamped to [0, 1]. Schedulers that add noise (DDPM,
Euler ancestral, DDIM with `eta > 0`) draw it from `generator` at temperature 1: the paper's
`tau_d` belongs to the `ancestral` and `respace` samplers. NFE = the scheduler's number of model
calls (`len(scheduler.timesteps)`: twice the steps, less one, for Heun's second-order steps).

Examples:
    >>> from mrsisr.samplers.diffusers_adapter import DiffusersSampler
    >>> s = DiffusersSampler("UniPCMultistepScheduler", steps=10)
    >>> s.timesteps(100)
    [100, 90, 80, 70, 60, 50, 40, 30, 20, 10]
    >>> s.nfe(100), DiffusersSampler("HeunDiscreteScheduler", steps=10).nfe(100)
    (10, 19)
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from mrsisr.diffusion import Progress, masked_eps, track
from mrsisr.errors import RecipeError
from mrsisr.registries import SAMPLERS
from mrsisr.samplers.ancestral import _check_start
from mrsisr.schedules import CosineSchedule
from mrsisr.types import Condition, Denoiser, Schedule

__all__ = ["DiffusersSampler", "build_scheduler"]


def _scheduler_class(name: str) -> type:
    import diffusers

    cls = None
    try:
        cls = getattr(diffusers, name, None)
    except ImportError as exc:  # a scheduler whose optional backend is missing (torchsde)
        raise RecipeError(
            f"[sampler] scheduler {name!r} is not usable here: {exc}".strip()
        ) from None
    if not (isinstance(cls, type) and name.endswith("Scheduler") and hasattr(cls, "set_timesteps")):
        raise RecipeError(
            f"[sampler] scheduler must name a diffusers scheduler class such as "
            f"'UniPCMultistepScheduler', got {name!r}"
        )
    return cls


def build_scheduler(
    name: str, t_start: int, schedule: Schedule, steps: int, options: Mapping[str, Any] | None
) -> Any:
    """A diffusers scheduler on the truncated chain `1..t_start`, its timesteps set.

    Args:
        name: Scheduler class name in `diffusers`.
        t_start: The start, the top of the truncated chain.
        schedule: The schedule the denoiser was trained with.
        steps: Inference steps.
        options: Further constructor arguments (they override the defaults).

    Returns:
        The scheduler, after `set_timesteps(steps)`.

    Raises:
        RecipeError: For an unknown class, or options its constructor refuses.
    """
    cls = _scheduler_class(name)
    params = inspect.signature(cls.__init__).parameters
    if "trained_betas" not in params:
        raise RecipeError(
            f"[sampler] {name} does not take a beta schedule (trained_betas); the adapter runs "
            f"the discrete-time schedulers (DDPM, DDIM, DPM-Solver, UniPC, DEIS, Euler, Heun, …)"
        )
    kwargs: dict[str, Any] = {
        "num_train_timesteps": int(t_start),
        "trained_betas": schedule.betas[1 : t_start + 1].double().numpy(),
    }
    if "timestep_spacing" in params:
        kwargs["timestep_spacing"] = "trailing"
    kwargs.update(dict(options or {}))
    unknown = sorted(k for k in kwargs if k not in params)
    if unknown and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        raise RecipeError(f"[sampler] {name} takes no option {', '.join(map(repr, unknown))}")
    try:
        scheduler = cls(**kwargs)
        scheduler.set_timesteps(min(int(steps), int(t_start)))
    except (TypeError, ValueError, NotImplementedError) as exc:
        raise RecipeError(f"[sampler] {name}: {' '.join(str(exc).split())[:200]}") from None
    return scheduler


@SAMPLERS.register("diffusers")
class DiffusersSampler:
    """Any diffusers scheduler as a sampler: `type = "diffusers"`, `scheduler = "UniPC…"`.

    Args:
        scheduler: Class name in `diffusers`, e.g. `"UniPCMultistepScheduler"`,
            `"DPMSolverMultistepScheduler"`, `"EulerDiscreteScheduler"`.
        steps: Inference steps (`set_timesteps`); at most `t_start`.
        options: Constructor arguments, e.g. `{solver_order = 2}` or
            `{algorithm_type = "dpmsolver++"}` (a TOML table in a recipe). `num_train_timesteps`
            and `trained_betas` are set from the start and the schedule.
        clamp_output: Clamp the final sample to [0, 1] (after masking).
        progress: `True` shows a progress bar; a callable `progress(done, total)` is called after
            each model call.

    Raises:
        RecipeError: For an unknown scheduler class or a non-positive `steps`.
    """

    def __init__(
        self,
        scheduler: str = "UniPCMultistepScheduler",
        steps: int = 10,
        options: Mapping[str, Any] | None = None,
        clamp_output: bool = True,
        progress: bool | Progress = False,
    ) -> None:
        if int(steps) != steps or steps < 1:
            raise RecipeError(f"[sampler] steps must be a positive integer, got {steps!r}")
        if options is not None and not isinstance(options, Mapping):
            raise RecipeError(f"[sampler] options must be a table, got {options!r}")
        _scheduler_class(scheduler)  # fail at build time, not at the first sample
        self.scheduler = scheduler
        self.steps = int(steps)
        self.options = dict(options or {})
        self.clamp_output = clamp_output
        self.progress = progress

    def _build(self, t_start: int, schedule: Schedule | None) -> Any:
        if schedule is None:
            schedule = CosineSchedule(T=max(1000, int(t_start)))
        return build_scheduler(self.scheduler, int(t_start), schedule, self.steps, self.options)

    def timesteps(self, t_start: int, schedule: Schedule | None = None) -> list[int]:
        """The timesteps at which the denoiser is called, in this project's convention.

        Args:
            t_start: Starting timestep.
            schedule: The schedule (default: cosine, `T = max(1000, t_start)`).

        Returns:
            One integer per model call, from `t_start` down (repeats for multi-stage solvers).
        """
        sched = self._build(t_start, schedule)
        return [int(round(float(t))) + 1 for t in sched.timesteps]

    def nfe(self, t_start: int) -> int:
        """Denoiser evaluations per call.

        Args:
            t_start: Starting timestep.

        Returns:
            The scheduler's number of model calls from `t_start`.
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
        """Run the scheduler from `x_start` at `t_start` down to `x_0`.

        Args:
            denoiser: The epsilon-predicting network.
            x_start: `x_{t_start}`, `(B, 1, H, W)`.
            t_start: Its timestep, in 1..T.
            cond: Conditions of the batch.
            schedule: The noise schedule the denoiser was trained with.
            generator: Noise of stochastic schedulers.

        Returns:
            `x_0` `(B, 1, H, W)`, masked (and clamped to [0, 1] if `clamp_output`).
        """
        t_start = _check_start(t_start, schedule)
        sched = self._build(t_start, schedule)
        mask = cond.mask.to(x_start)
        takes_generator = "generator" in inspect.signature(sched.step).parameters
        timesteps = list(sched.timesteps)
        # the scheduler's own sample space: x_t itself, or x_t / sqrt(gamma_t) for sigma schedulers
        first = sched.scale_model_input(torch.ones_like(x_start[:1]), timesteps[0])
        x = (x_start * mask) / first.to(x_start)
        for t in track(timesteps, len(timesteps), self.progress, self.scheduler):
            model_in = sched.scale_model_input(x, t)
            t_ours = min(max(int(round(float(t))) + 1, 1), t_start)
            eps = masked_eps(denoiser, model_in, t_ours, cond)
            extra = {"generator": generator} if takes_generator else {}
            x = sched.step(eps, t, x, return_dict=False, **extra)[0] * mask
        x = x.to(x_start.dtype) * mask
        return x.clamp(0.0, 1.0) if self.clamp_output else x

    def __repr__(self) -> str:
        return f"DiffusersSampler({self.scheduler!r}, steps={self.steps}, options={self.options})"
