"""Data consistency: keep the measured centre of k-space in every estimate of the map.

An MRSI acquisition *is* the central `L×L` block of k-space (`L = 64 / s`): the low-resolution
input is that block zero-filled (SPEC §1). A data-consistent sampler therefore only adds what lies
outside the block, and keeps the measured frequencies (overall intensity, low-frequency contrast)
as they were acquired. This is the projection step of score-based MRI reconstruction and DDNM,
applied to MRSI super-resolution.

Components of the `consistency` role (registry [`CONSISTENCY`][mrsisr.registries.CONSISTENCY],
entry-point group `mrsisr.consistency`):

- `none`: the paper's methods, unchanged (the default);
- `kspace`: [`KSpaceConsistency`][mrsisr.consistency.KSpaceConsistency].

How it reaches every sampler without changing any sampler: the pipeline hands the sampler a
[`ProjectedDenoiser`][mrsisr.consistency.ProjectedDenoiser]. It turns the network's ε into the
x0 estimate of Eq. 2, projects that estimate, and gives back the ε of the projected x0. Every
sampler (ancestral, respace, DPM-Solver++, plugin samplers such as DDIM) only ever sees ε, so all
of them become data-consistent. One-step pipelines (MUNet, the Flow Enhancer, a flow-only model)
and the end of every chain get the same projection once more on the final map.

Turn it on with a recipe table, an override, or on a loaded pipeline:

```toml
[consistency]
type = "kspace"
iterations = 2
```

```python
pipe = mrsisr.load("ftddm", overrides={"consistency": {"type": "kspace"}})
```

**The magnitude detail.** The protocol's LR map is the *magnitude* of the truncated image, so the
measured block is only known up to its phase. By default the projection combines the LR magnitude
with the phase of the estimate's own truncated image (the ground truth is then a fixed point);
`magnitude = false` uses the block of the LR map's spectrum as it is. When the acquisition itself
is known (`cond.measured`: complex maps read at their acquired matrix by `mrsisr sr`, or
`MRSIDataset(measured="simulate")`), its block is the data term as it is and no phase is
estimated. With `iterations > 1` the
data step and the mask step alternate (projections onto convex sets); the mask step always comes
last, so the answer stays zero outside the quality mask.

Examples:
    >>> import torch
    >>> from mrsisr.consistency import KSpaceConsistency
    >>> from mrsisr.kspace import fft2c, scale_block_mask
    >>> from mrsisr.data.degrade import kspace_truncate
    >>> from mrsisr.types import Condition
    >>> x = torch.rand(2, 1, 64, 64, dtype=torch.float64)
    >>> ones = torch.ones_like(x)
    >>> cond = Condition(ones, kspace_truncate(x, 16).real, ones, ones, torch.tensor([4.0, 4.0]))
    >>> y = KSpaceConsistency(clamp=False, magnitude=False).project(torch.zeros_like(x), cond)
    >>> block = scale_block_mask(cond.scale, 64)
    >>> bool(torch.allclose(fft2c(y)[block], fft2c(cond.lr)[block]))
    True
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mrsisr.kspace import fft2c, ifft2c, scale_block_mask
from mrsisr.registries import CONSISTENCY
from mrsisr.types import Condition

__all__ = [
    "KSpaceConsistency",
    "NoConsistency",
    "ProjectedDenoiser",
    "finish",
    "is_active",
    "measured_block_error",
]


class NoConsistency(nn.Module):
    """No projection: the paper's methods as published (the default)."""

    active = False

    def project(self, x0: Tensor, cond: Condition) -> Tensor:
        """Return `x0` unchanged.

        Args:
            x0: Estimates `(B, 1, H, W)`.
            cond: Their conditions.

        Returns:
            `x0`.
        """
        return x0


class KSpaceConsistency(nn.Module):
    """Replace the central `L×L` k-space block of each estimate by the measured one.

    Args:
        iterations: Times the data step and the mask step alternate (at least 1).
        use_mask: Multiply by the quality mask after each data step (the maps are zero outside
            it). Without it the answer is exactly consistent but may be non-zero outside the
            mask.
        clamp: Also clip to the maps' range [0, 1] after each data step (with the mask step:
            alternating projections onto the data, the support and the range).
        magnitude: Treat the LR map as what the protocol makes it, the **magnitude** of the
            truncated image: the measured block is taken from `lr · exp(i·phase)`, the phase
            being that of the estimate's own truncated image. The ground truth is then a fixed
            point. `False` takes the block of the LR map's spectrum as it is (exact for a
            measurement that is the real truncated image itself, e.g. complex data).

    Raises:
        ValueError: If `iterations < 1`.
    """

    active = True

    def __init__(
        self, iterations: int = 1, use_mask: bool = True, clamp: bool = True, magnitude: bool = True
    ) -> None:
        super().__init__()
        if int(iterations) < 1:
            raise ValueError(f"iterations must be at least 1, got {iterations}")
        self.iterations = int(iterations)
        self.use_mask = bool(use_mask)
        self.clamp = bool(clamp)
        self.magnitude = bool(magnitude)

    def project(self, x0: Tensor, cond: Condition) -> Tensor:
        """Project estimates onto the measured data (and the mask).

        The maps are real, so the projection is the orthogonal one among real images: the
        measured block's frequencies whose mirror `-k` is also in the block are replaced
        directly; the block's edge row and column `-L/2` (whose mirror `+L/2` lies outside) get
        twice the residual, because taking the real part halves it. For a measurement that comes
        from a real image (the LR map) the block is then matched exactly.

        Args:
            x0: Estimates `(B, 1, H, W)`, real.
            cond: Their conditions; `cond.measured` carries the acquisition when it is known
                (its block is then kept as it is), else `cond.lr` its magnitude; `cond.scale`
                gives the block's size.

        Returns:
            The projected estimates, same shape and dtype.
        """
        work = torch.float64 if x0.dtype == torch.float64 else torch.float32
        x = x0.to(work)
        block = scale_block_mask(cond.scale.to(x.device), x.shape[-1])
        weight = _residual_weight(cond.scale.to(x.device), x.shape[-1]).to(x)
        lr = cond.lr.to(x)
        acquired = cond.measured is not None
        if acquired:  # the acquisition with its phase: its block is known exactly
            cdtype = torch.complex128 if work == torch.float64 else torch.complex64
            measured = fft2c(cond.measured.to(device=x.device, dtype=cdtype))
        else:
            measured = fft2c(lr)
        mask = cond.mask.to(x)
        for _ in range(self.iterations):
            k = fft2c(x)
            if self.magnitude and not acquired:  # the LR magnitude with the estimate's own phase
                trunc = ifft2c(k * block)
                phase = torch.where(trunc.abs() > 1e-12, trunc / trunc.abs().clamp_min(1e-12), 1.0)
                measured = fft2c(lr * phase)
            residual = (measured - k) * weight
            x = x + ifft2c(residual).real
            if self.use_mask:
                x = x * mask
            if self.clamp:
                x = x.clamp(0.0, 1.0)
        return x.to(x0.dtype)


def _mirror(block: Tensor) -> Tensor:
    """`out[..., i, j] = block[..., -i, -j]` in the centred layout (frequency k -> -k)."""
    return torch.roll(torch.flip(block, dims=(-2, -1)), shifts=(1, 1), dims=(-2, -1))


def _residual_weight(scale: Tensor, n: int) -> Tensor:
    block = scale_block_mask(scale, n)
    paired = block & _mirror(block)
    return paired.double() + 2.0 * (block & ~paired).double()


CONSISTENCY.register("none", NoConsistency)
CONSISTENCY.register("kspace", KSpaceConsistency)


def is_active(consistency: Any) -> bool:
    """Whether a consistency component changes anything (`None` and `none` do not).

    Args:
        consistency: A consistency component or `None`.

    Returns:
        True for a projection that acts.
    """
    return consistency is not None and bool(getattr(consistency, "active", True))


class ProjectedDenoiser(nn.Module):
    """An ε-network whose implied x0 estimate is projected before the sampler sees it.

    `eps -> x0 = (x_t - sqrt(1 - g) eps) / sqrt(g) -> P(x0) -> eps' = (x_t - sqrt(g) P(x0)) /
    sqrt(1 - g)` with `g = gamma_t` (Eq. 2). Any sampler that uses ε (all of mrsisr's and the
    plugins') then builds its step on the projected x0.

    Args:
        denoiser: The ε-predicting network.
        consistency: The projection.
        schedule: The noise schedule (for `gamma_t`).
    """

    def __init__(self, denoiser: nn.Module, consistency: Any, schedule: Any) -> None:
        super().__init__()
        self.denoiser = denoiser
        self.consistency = consistency
        self.schedule = schedule

    def forward(self, x_t: Tensor, t: Tensor, cond: Condition) -> Tensor:
        """Predict ε, project the implied x0, return the ε of the projected x0.

        Args:
            x_t: Noisy maps `(B, 1, H, W)`.
            t: Timesteps `(B,)` in 1..T.
            cond: Conditions.

        Returns:
            ε consistent with the projected x0, `(B, 1, H, W)`.
        """
        eps = self.denoiser(x_t, t, cond)
        g = self.schedule.gammas[torch.as_tensor(t).long().cpu()].view(-1, 1, 1, 1)
        a, b = g.sqrt().to(x_t), (1.0 - g).sqrt().to(x_t)
        x0 = (x_t - b * eps.to(x_t)) / a
        x0 = self.consistency.project(x0, cond)
        return ((x_t - a * x0) / b).to(eps.dtype)


def finish(x0: Tensor, cond: Condition, consistency: Any) -> Tensor:
    """The last step of every pipeline: project (if asked), clamp to [0, 1], mask.

    Args:
        x0: Final estimates `(B, 1, H, W)`.
        cond: Their conditions.
        consistency: A consistency component or `None`.

    Returns:
        The answer, masked and in [0, 1].
    """
    if is_active(consistency):
        x0 = consistency.project(x0, cond)
    return x0.clamp(0.0, 1.0) * cond.mask.to(x0)


def measured_block_error(x0: Tensor, cond: Condition) -> Tensor:
    """Relative distance between a map's central k-space block and the measured one.

    Args:
        x0: Maps `(B, 1, H, W)`.
        cond: Their conditions.

    Returns:
        `||B(F x0) - B(F m)|| / ||B(F m)||` per sample, `(B,)`, where `m` is the acquisition
        `cond.measured` when it is known and the LR map `cond.lr` otherwise.
    """
    block = scale_block_mask(cond.scale.to(x0.device), x0.shape[-1])
    a = fft2c(x0.double()) * block
    ref = cond.lr if cond.measured is None else cond.measured
    b = fft2c(ref.to(x0.device, torch.complex128 if ref.is_complex() else torch.float64)) * block
    return (
        (a - b).abs().flatten(1).norm(dim=1) / b.abs().flatten(1).norm(dim=1).clamp_min(1e-12)
    ).to(x0.dtype)
