"""The diffusion pipeline: an initializer, then a (possibly truncated) reverse chain.

A pipeline only wires. [`DiffusionPipeline`][mrsisr.pipelines.diffusion.DiffusionPipeline] covers DDPM,
respaced DDPM, DPM-Solver++, TDPM, FTDDM and every hybrid: an initializer produces `x_{t_start}`
and a sampler runs the reverse chain from there. Truncation is nothing more than `t_start < T`,
and `t_start = 0` leaves the whole job to a trained initializer (the "flow only" ablation of the
paper's Table 2: the flow models `x_0` itself and no denoiser runs).

It keeps the [`Pipeline`][mrsisr.types.Pipeline] contract: `sample(cond, generator=None,
progress=None)`, `nfe`, `parts()`, `training_stages()` and `recipe`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mrsisr.pipelines.base import CountingDenoiser, Progress, SuperResolveMixin, _parts_of, report
from mrsisr.registries import PIPELINES
from mrsisr.stages import Stage
from mrsisr.types import Batch, Condition, Denoiser, Initializer, Sampler, Schedule


@PIPELINES.register("diffusion")
class DiffusionPipeline(SuperResolveMixin, nn.Module):
    """Initializer, then a (possibly truncated) reverse-diffusion chain: DDPM, TDPM, FTDDM and hybrids.

    Args:
        schedule: The noise schedule the denoiser was trained with.
        initializer: Produces `x_{t_start}` (Gaussian noise, a GAN generator, a flow).
        denoiser: The ε-predicting network.
        sampler: Runs the reverse chain from `t_start` down to 0.
        t_start: Timestep the chain starts at; `None` means `schedule.T` (plain DDPM). With a
            truncated model this is `T_trunc` and also the largest timestep trained on. `0`
            means the initializer draws `x_0` itself: the denoiser is neither trained, counted,
            saved nor called (this needs a trained initializer, such as a flow).
        loss_weighting: How the denoiser's ε-MSE is weighted over timesteps: `"eps"` (Eq. 5,
            the paper), `"x0"` (constant weight on the x0 error) or `"min_snr"` (min-SNR-γ);
            see [`loss_weights`][mrsisr.diffusion.loss_weights]. Training only.
        snr_gamma: γ of the `"min_snr"` weighting.
        low_t_fraction: Share of training timesteps drawn from `U{1, ..., low_t_max}` instead
            of `U{1, ..., t_start}` (0, the default, is the paper's uniform draw); see
            [`draw_timesteps`][mrsisr.diffusion.draw_timesteps]. Training only: used to
            fine-tune a full-chain DDPM UNet on the last steps of its chain.
        low_t_max: Largest timestep of that low-`t` draw.
        consistency: Optional data-consistency projection applied to every x0 estimate of the chain
            and to the answer (a `[consistency]` table, e.g.
            `type = "kspace"`); `None` or `none` leaves the method as published. See
            [`mrsisr.consistency`][mrsisr.consistency].

    Raises:
        ValueError: If `t_start` is outside `[0, T]`, or 0 with an initializer that has
            nothing to train (Gaussian noise).
    """

    def __init__(
        self,
        schedule: Schedule,
        initializer: Initializer,
        denoiser: Denoiser,
        sampler: Sampler,
        t_start: int | None = None,
        loss_weighting: str = "eps",
        snr_gamma: float = 5.0,
        low_t_fraction: float = 0.0,
        low_t_max: int = 100,
        consistency: nn.Module | None = None,
    ) -> None:
        super().__init__()
        from mrsisr.diffusion import LOSS_WEIGHTINGS

        if loss_weighting not in LOSS_WEIGHTINGS:
            raise ValueError(
                f"loss_weighting must be one of {', '.join(LOSS_WEIGHTINGS)}, got {loss_weighting!r}"
            )
        if not float(snr_gamma) > 0:
            raise ValueError(f"snr_gamma must be positive, got {snr_gamma}")
        self.loss_weighting = loss_weighting
        self.snr_gamma = float(snr_gamma)
        if not 0.0 <= float(low_t_fraction) <= 1.0:
            raise ValueError(f"low_t_fraction must be in [0, 1], got {low_t_fraction}")
        self.low_t_fraction = float(low_t_fraction)
        self.low_t_max = int(low_t_max)
        t_start = schedule.T if t_start is None else int(t_start)
        if not 0 <= t_start <= schedule.T:
            raise ValueError(f"t_start must be in [0, {schedule.T}], got {t_start}")
        if self.low_t_fraction > 0 and not 1 <= self.low_t_max <= max(t_start, 1):
            raise ValueError(f"low_t_max must be in [1, t_start = {t_start}], got {low_t_max}")
        if t_start == 0 and getattr(initializer, "training_stages", None) is None:
            raise ValueError(
                "t_start = 0 leaves the whole map to the initializer; "
                f"{type(initializer).__name__} has nothing to learn (use a flow or a GAN)"
            )
        self.schedule = schedule
        self.initializer = initializer
        self.denoiser = denoiser
        self.sampler = sampler
        self.t_start = t_start
        self.consistency = consistency

    @property
    def nfe(self) -> int:
        """Network evaluations per sample: the initializer's plus the sampler's."""
        if self.t_start == 0:
            return int(self.initializer.nfe)
        return int(self.initializer.nfe) + int(self.sampler.nfe(self.t_start))

    @torch.no_grad()
    def sample(
        self,
        cond: Condition,
        generator: torch.Generator | None = None,
        *,
        progress: Progress | None = None,
    ) -> Tensor:
        """Super-resolve a batch: draw `x_{t_start}` from the initializer, then run the sampler.

        Args:
            cond: Conditions of the batch (mask, LR, T1, FLAIR, scale).
            generator: Optional random generator for reproducible samples.
            progress: Called with the number of network evaluations after each one (the
                initializer's, then every denoiser call of the chain).

        Returns:
            `x0` estimates `(B, 1, H, W)`, masked and clamped to [0, 1].
        """
        from mrsisr.consistency import ProjectedDenoiser, finish, is_active

        x_start = self.initializer.sample(cond, self.t_start, self.schedule, generator=generator)
        report(progress, int(self.initializer.nfe))
        if self.t_start == 0:  # the initializer's draw is the answer
            return finish(x_start * cond.mask.to(x_start), cond, self.consistency)
        denoiser = self.denoiser if progress is None else CountingDenoiser(self.denoiser, progress)
        if is_active(self.consistency):  # every x0 estimate of any sampler is projected
            denoiser = ProjectedDenoiser(denoiser, self.consistency, self.schedule)
        x0 = self.sampler(denoiser, x_start, self.t_start, cond, self.schedule, generator=generator)
        return finish(x0, cond, self.consistency)

    def forward(self, cond: Condition, generator: torch.Generator | None = None) -> Tensor:
        """Same as [`sample`][mrsisr.pipelines.diffusion.DiffusionPipeline.sample].

        Args:
            cond: Conditions of the batch.
            generator: Optional random generator.

        Returns:
            `x0` estimates `(B, 1, H, W)`.
        """
        return self.sample(cond, generator=generator)

    def denoiser_loss(self, batch: Batch, generator: torch.Generator | None = None) -> Tensor:
        """ε-MSE loss of the denoiser (Eq. 5) with `t ~ U{1, ..., t_start}` (or the low-`t`
        mixture asked for), weighted as asked.

        Args:
            batch: Training batch.
            generator: Optional random generator for `t` and the noise.

        Returns:
            Scalar loss.
        """
        from mrsisr.diffusion import diffusion_loss

        return diffusion_loss(
            self.denoiser,
            batch.x0,
            batch.cond,
            self.schedule,
            self.t_start,
            generator,
            weighting=self.loss_weighting,
            snr_gamma=self.snr_gamma,
            low_t_fraction=self.low_t_fraction,
            low_t_max=self.low_t_max,
        )

    def training_stages(self) -> list[Any]:
        """Training stages, in order: the denoiser, then the initializer's own stages (if any).

        The two are independent (the initializer learns `q(x_{t_start} | x_0)`, not the
        denoiser's output), so the denoiser goes first: a truncated UNet trained once can be
        reused by FTDDM and TDPM. With `t_start = 0` there is no denoiser stage.

        Returns:
            A list of [`Stage`][mrsisr.stages.Stage].
        """
        stages = []
        if self.t_start > 0:
            stages.append(Stage("denoiser", {"denoiser": self.denoiser}, self.denoiser_loss))
        init_stages = getattr(self.initializer, "training_stages", None)
        if init_stages is not None:
            stages.extend(init_stages(self.t_start, self.schedule))
        return stages

    def parts(self) -> dict[str, tuple[nn.Module, bool]]:
        """Return the networks of this pipeline and whether Table 1 counts them.

        Returns:
            Part name → (module, counted). The denoiser is `denoiser` (absent when
            `t_start = 0`); the initializer's own parts (`flow`, `generator`,
            `discriminator`, ...) follow.
        """
        out: dict[str, tuple[nn.Module, bool]] = {}
        if isinstance(self.denoiser, nn.Module) and self.t_start > 0:
            out["denoiser"] = (self.denoiser, True)
        out.update(_parts_of(self.initializer, "initializer"))
        return out
