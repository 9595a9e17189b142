"""The one-step pipeline: a network maps the conditions to `x0` in one evaluation (MUNet-FS-cWGAN).

The network is called as `network(cond, lambda_adv=..., metabolite=...)` and returns the masked
`x0` estimate `(B, 1, H, W)` (the contract of [`MUNet`][mrsisr.backbones.munet.MUNet]); an
optional conditional critic turns the reconstruction training into a conditional WGAN-GP.

Training (the trainer calls these; [`CRITIC_STEPS`][mrsisr.losses.CRITIC_STEPS] = 5
critic steps per generator step, Adam lr 1e-4, betas (0.5, 0.9), as the authors):

- [`critic_loss`][mrsisr.pipelines.one_step.OneStepPipeline.critic_loss] for the critic's optimiser,
- [`generator_loss`][mrsisr.pipelines.one_step.OneStepPipeline.generator_loss] for the network's,

each drawing `lambda_adv ~ U[a, b]` per batch (set to 0 with probability 0.1) from
`lambda_adv_range = (a, b)`, as the authors' `--adv-weight-train a b`; the network sees the value it
is trained with through its sharpness CIN. At test time `lambda_adv` is the sharpness knob.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from mrsisr.losses import CRITIC_STEPS, GP_WEIGHT
from mrsisr.losses import critic_loss as _critic_loss
from mrsisr.losses import generator_loss as _generator_loss
from mrsisr.pipelines.base import Progress, SuperResolveMixin, report
from mrsisr.registries import PIPELINES
from mrsisr.stages import Stage
from mrsisr.types import Batch, Condition

__all__ = ["OneStepPipeline"]


@PIPELINES.register("one_step")
class OneStepPipeline(SuperResolveMixin, nn.Module):
    """One network evaluation from the conditions to `x0` (MUNet-FS-cWGAN); NFE 1.

    Args:
        network: The one-step predictor, `network(cond, lambda_adv=, metabolite=) -> x0`.
        critic: Optional conditional critic `critic(x, cond)` (one score per map or per patch) for adversarial training;
            a training-only part, not counted in Table 1.
        lambda_adv: Test-time adversarial weight: the sharpness knob (0 = fidelity end).
        lambda_adv_range: `(a, b)`: training draws `lambda_adv ~ U[a, b]` per batch. `(0, 0)`
            trains without the critic.
        zero_prob: Probability that a training batch uses `lambda_adv = 0` (0.1 as the authors).
        critic_steps: Critic updates per network update (5).
        gp_weight: Gradient-penalty weight of the critic loss (10).
        consistency: Optional data-consistency projection (a `[consistency]` table, e.g.
            `type = "kspace"`); `None` or `none` leaves the method as published. See
            [`mrsisr.consistency`][mrsisr.consistency].
    """

    nfe: int = 1

    def __init__(
        self,
        network: nn.Module,
        critic: nn.Module | None = None,
        lambda_adv: float = 0.0,
        lambda_adv_range: Sequence[float] = (0.0, 0.0),
        zero_prob: float = 0.1,
        critic_steps: int = CRITIC_STEPS,
        gp_weight: float = GP_WEIGHT,
        consistency: nn.Module | None = None,
    ) -> None:
        super().__init__()
        low, high = (float(v) for v in lambda_adv_range)
        if not 0 <= low <= high:
            raise ValueError(f"lambda_adv_range must be (a, b) with 0 <= a <= b, got {(low, high)}")
        if high > 0 and critic is None:
            raise ValueError("lambda_adv_range > 0 needs a [critic] table")
        self.network = network
        self.critic = critic
        self.lambda_adv = float(lambda_adv)
        self.lambda_adv_range = (low, high)
        self.zero_prob = float(zero_prob)
        self.critic_steps = int(critic_steps)
        self.gp_weight = float(gp_weight)
        self.consistency = consistency

    @torch.no_grad()
    def sample(
        self,
        cond: Condition,
        generator: torch.Generator | None = None,
        *,
        metabolite: Tensor | Sequence[str] | None = None,
        lambda_adv: float | None = None,
        progress: Progress | None = None,
    ) -> Tensor:
        """Super-resolve a batch with one network evaluation.

        Args:
            cond: Conditions of the batch.
            generator: Unused (the method is deterministic); part of the pipeline contract.
            metabolite: Metabolite names or codes `(B,)` for networks with a metabolite input.
            lambda_adv: Sharpness for this call; `None` uses the pipeline's `lambda_adv`.
            progress: Called with `1` after the network evaluation.

        Returns:
            `x0` estimates `(B, 1, H, W)`, masked and clamped to [0, 1].
        """
        lam = self.lambda_adv if lambda_adv is None else float(lambda_adv)
        from mrsisr.consistency import finish

        x0 = self.network(cond, lambda_adv=lam, metabolite=metabolite)
        report(progress, 1)
        return finish(x0, cond, self.consistency)

    def forward(self, cond: Condition, generator: torch.Generator | None = None) -> Tensor:
        """Same as [`sample`][mrsisr.pipelines.one_step.OneStepPipeline.sample].

        Args:
            cond: Conditions of the batch.
            generator: Unused.

        Returns:
            `x0` estimates `(B, 1, H, W)`.
        """
        return self.sample(cond, generator=generator)

    def parts(self) -> dict[str, tuple[nn.Module, bool]]:
        """Return the networks and whether Table 1 counts them.

        Returns:
            `{"network": (net, True), "critic": (critic, False)}` (no critic entry without one).
        """
        out: dict[str, tuple[nn.Module, bool]] = {"network": (self.network, True)}
        if self.critic is not None:
            out["critic"] = (self.critic, False)
        return out

    # ------------------------------------------------------------------ training
    @property
    def adversarial(self) -> bool:
        """Whether training uses the critic (a critic and `lambda_adv_range` above 0)."""
        return self.critic is not None and self.lambda_adv_range[1] > 0

    def training_stages(self) -> list[Any]:
        """Training stages: one, the network (with the critic when adversarial).

        Adam lr 1e-4, betas (0.5, 0.9) for both, `critic_steps` critic updates per network
        update, as the authors.

        Returns:
            A list of one [`Stage`][mrsisr.stages.Stage].
        """
        adv = {}
        if self.adversarial:
            adv = {
                "critic_modules": {"critic": self.critic},
                "critic_loss": self.critic_loss,
                "critic_steps": self.critic_steps,
            }
        net = {"network": self.network}
        return [Stage("network", net, self.generator_loss, betas=(0.5, 0.9), **adv)]

    def draw_lambda_adv(self, generator: torch.Generator | None = None) -> float:
        """Draw one training `lambda_adv`: `U[a, b]`, or 0 with probability `zero_prob`.

        Args:
            generator: Optional CPU random generator.

        Returns:
            The adversarial weight for one batch.
        """
        low, high = self.lambda_adv_range
        u = torch.rand(2, generator=generator).tolist()
        if high == 0 or u[0] < self.zero_prob:
            return 0.0
        return low + (high - low) * u[1]

    def _predict(self, batch: Batch, lambda_adv: float) -> Tensor:
        met = batch.metabolite if batch.metabolite else None
        return self.network(batch.cond, lambda_adv=lambda_adv, metabolite=met)

    def generator_loss(
        self,
        batch: Batch,
        generator: torch.Generator | None = None,
        lambda_adv: float | None = None,
    ) -> Tensor:
        """Network loss `0.16 L1 + 0.84 (1 - MS-SSIM) + lambda_adv * (-D(x0_hat))`.

        Args:
            batch: Training batch (`x0`, `cond`, `metabolite`).
            generator: Optional CPU random generator for the draw.
            lambda_adv: Adversarial weight; `None` draws one
                ([`draw_lambda_adv`][mrsisr.pipelines.one_step.OneStepPipeline.draw_lambda_adv]).

        Returns:
            Scalar loss.
        """
        lam = (
            self.draw_lambda_adv(_same_draw(generator)) if lambda_adv is None else float(lambda_adv)
        )
        x0_hat = self._predict(batch, lam)
        return _generator_loss(x0_hat, batch.x0, self.critic, batch.cond, lam)

    def critic_loss(
        self,
        batch: Batch,
        generator: torch.Generator | None = None,
        lambda_adv: float | None = None,
    ) -> Tensor:
        """Critic loss `D(fake) - D(real) + 10 GP` with fakes from the (frozen) network.

        Args:
            batch: Training batch.
            generator: Optional CPU random generator (draw and penalty interpolation).
            lambda_adv: Weight the fakes are generated with; `None` draws one.

        Returns:
            Scalar loss.

        Raises:
            ValueError: The pipeline has no critic.
        """
        if self.critic is None:
            raise ValueError("one_step: this pipeline has no critic to train")
        lam = (
            self.draw_lambda_adv(_same_draw(generator)) if lambda_adv is None else float(lambda_adv)
        )
        with torch.no_grad():
            fake = self._predict(batch, lam)
        return _critic_loss(self.critic, batch.cond, batch.x0, fake, self.gp_weight, generator)


def _same_draw(generator: torch.Generator | None) -> torch.Generator | None:
    """A generator that replays the first draws of this training step's generator.

    The trainer seeds one generator per step; seeding a twin from its initial seed makes every
    loss of the step (the critic steps and the network step) draw the same lambda_adv, as the
    authors draw one per batch, however much the penalty's draws advanced the original.
    """
    if generator is None:
        return None
    return torch.Generator(device=generator.device).manual_seed(generator.initial_seed())
