"""Data containers and the contracts between parts.

The data path is one straight line:

```text
dataset -> Batch(x0, Condition) -> initializer -> x_start at t_start -> sampler(denoiser) -> x0_hat -> metrics
```

Conventions used everywhere in mrsisr:

- Maps are `(B, 1, 64, 64)` float tensors, each divided by its own maximum (values in [0, 1]).
- Timesteps follow the paper: `t` runs from 1 to `T`; `x_0` is the clean map and
  `x_t = sqrt(gamma_t) x_0 + sqrt(1 - gamma_t) eps` (SPEC §3). `t_start = T` is plain DDPM,
  `t_start = T_trunc` (100) a truncated chain whose start comes from an initializer.
- Everything a model produces is multiplied by the quality mask `cond.mask`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # keep `import mrsisr.types` free of torch for the fast CLI paths
    import torch
    from torch import Tensor


@dataclass
class Condition:
    """Everything a super-resolution model sees besides the noisy image.

    Attributes:
        mask: Quality mask `M`, shape `(B, 1, H, W)`, 1 where the map is valid.
        lr: Low-resolution map on the high-resolution grid (k-space truncated), `(B, 1, H, W)`.
        t1: T1-weighted MRI resampled to the map grid and divided by its maximum, `(B, 1, H, W)`.
        flair: FLAIR MRI, like `t1`, `(B, 1, H, W)`.
        scale: Upscaling factor `s = 64 / L` per sample, shape `(B,)`.
        metabolite: Optional metabolite code per sample, `(B,)` long: the index in
            `mrsisr.data.METABOLITES` (used by networks with a metabolite input, such as MUNet's
            `_Met` variant). `None` when unknown.
        measured: Optional acquisition itself, `(B, 1, H, W)` complex: the zero-filled image,
            globally phase-corrected, divided by the same maximum as the map. Its central `L×L`
            k-space block is what the scanner measured; data consistency takes it as its data
            term when it is given and estimates it from `lr` otherwise. No network reads it.
            `None` when only the magnitude is known (the protocol's LR maps). For the
            protocol's simulated acquisitions `lr` is its magnitude.
    """

    mask: Tensor
    lr: Tensor
    t1: Tensor
    flair: Tensor
    scale: Tensor
    metabolite: Tensor | None = None
    measured: Tensor | None = None

    @property
    def batch_size(self) -> int:
        """Number of samples in the batch."""
        return int(self.mask.shape[0])

    def channels(self, *, mask: bool = True, mri: bool = True) -> Tensor:
        """Concatenate the image conditions along channels.

        Args:
            mask: Include the mask channel (the Table 3 ablation drops it).
            mri: Include the T1 and FLAIR channels (the Table 3 ablation drops them).

        Returns:
            `(B, C, H, W)` with channels in the order mask, LR, T1, FLAIR (C = 4 with all).
        """
        import torch

        parts = ([self.mask] if mask else []) + [self.lr] + ([self.t1, self.flair] if mri else [])
        return torch.cat(parts, dim=1)

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> Condition:
        """Return a copy on another device and/or floating dtype (the mask keeps its values).

        Args:
            device: Target device.
            dtype: Target floating dtype, or `None` to keep.

        Returns:
            The moved condition.
        """
        import torch

        def move(value: Tensor) -> Tensor:
            if value.is_complex() and dtype is not None:  # `measured` follows the real dtype
                cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
                return value.to(device=device, dtype=cdtype)
            floating = value.is_floating_point()
            return value.to(device=device, dtype=dtype if floating else None)

        return self._map(move)

    def repeat(self, n: int) -> Condition:
        """Repeat every sample `n` times (sample-major: s0, s0, ..., s1, s1, ...).

        Args:
            n: Copies per sample, e.g. to draw several posterior samples at once.

        Returns:
            A condition with batch size `B * n`.
        """
        return self._map(lambda v: v.repeat_interleave(n, dim=0))

    def __getitem__(self, index: Any) -> Condition:
        return self._map(lambda v: v[index])

    def _map(self, fn: Any) -> Condition:
        return Condition(
            **{
                f.name: None if getattr(self, f.name) is None else fn(getattr(self, f.name))
                for f in fields(self)
            }
        )


@dataclass
class Batch:
    """A batch of high-resolution maps with their conditions and bookkeeping.

    Attributes:
        x0: Target maps divided by their maximum, `(B, 1, H, W)`, zero outside the mask.
        cond: The conditions of each map.
        max_value: Each map's maximum before normalisation, `(B,)`; metrics are computed after
            multiplying back by it (SPEC §2).
        metabolite: Metabolite name of each map.
        subject: Subject identifier of each map.
        slice_index: Slice index of each map within its subject volume, `(B,)`.
    """

    x0: Tensor
    cond: Condition
    max_value: Tensor
    metabolite: list[str] = field(default_factory=list)
    subject: list[str] = field(default_factory=list)
    slice_index: Tensor | None = None

    def to(self, device: torch.device | str | None = None) -> Batch:
        """Return a copy with every tensor on `device`.

        Args:
            device: Target device.

        Returns:
            The moved batch.
        """
        return replace(
            self,
            x0=self.x0.to(device),
            cond=self.cond.to(device),
            max_value=self.max_value.to(device),
            slice_index=None if self.slice_index is None else self.slice_index.to(device),
        )

    def __getitem__(self, index: slice) -> Batch:
        """Return the maps `index` (a slice) of the batch.

        Args:
            index: A slice along the batch axis.

        Returns:
            The sub-batch.
        """
        return replace(
            self,
            x0=self.x0[index],
            cond=self.cond[index],
            max_value=self.max_value[index],
            metabolite=list(self.metabolite[index]),
            subject=list(self.subject[index]),
            slice_index=None if self.slice_index is None else self.slice_index[index],
        )


@runtime_checkable
class Schedule(Protocol):
    """A discrete variance-preserving noise schedule in the paper's indexing.

    `betas[t]` and `gammas[t]` are float64 tensors of length `T + 1` indexed by the paper's `t`,
    with `betas[0] = 0` and `gammas[0] = 1` (so `x_0` is the clean map).
    """

    T: int
    betas: Tensor
    gammas: Tensor

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """Draw `x_t ~ q(x_t | x_0)` for per-sample integer `t` of shape `(B,)`."""
        ...


@runtime_checkable
class Denoiser(Protocol):
    """A network that predicts the noise `eps` in `x_t`.

    Called as `denoiser(x_t, t, cond)` with `x_t` `(B, 1, H, W)`, `t` `(B,)` integer timesteps in
    1..T, and a [`Condition`][mrsisr.types.Condition]; returns `eps` `(B, 1, H, W)`.
    """

    def __call__(self, x_t: Tensor, t: Tensor, cond: Condition) -> Tensor: ...


@runtime_checkable
class Sampler(Protocol):
    """A reverse-diffusion sampler that starts from any image at any timestep.

    Called as `sampler(denoiser, x_start, t_start, cond, schedule, generator=None)`: `x_start` is
    the image at timestep `t_start` (pure noise for DDPM with `t_start = T`, an initializer's output
    for truncated models). Returns the final masked, clamped `x_0` estimate `(B, 1, H, W)`.
    """

    def __call__(
        self,
        denoiser: Denoiser,
        x_start: Tensor,
        t_start: int,
        cond: Condition,
        schedule: Schedule,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor: ...

    def nfe(self, t_start: int) -> int:
        """Number of denoiser evaluations one call makes when starting at `t_start`."""
        ...


@runtime_checkable
class Initializer(Protocol):
    """Produces the starting image `x_{t_start}` of a (truncated) reverse chain.

    `nfe` is the number of network evaluations per sample (0 for Gaussian noise, 1 for a GAN
    generator or a flow).
    """

    nfe: int

    def sample(
        self,
        cond: Condition,
        t_start: int,
        schedule: Schedule,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Return `x_{t_start}` for every sample of `cond`, masked, `(B, 1, H, W)`."""
        ...


@runtime_checkable
class Pipeline(Protocol):
    """The contract every super-resolution method keeps: what bench, sr, studies and training use.

    A pipeline is built from a recipe ([`Recipe.build`][mrsisr.recipes.Recipe.build]) or loaded
    with its weights ([`mrsisr.load`][mrsisr.zoo.load]); the three built-in pipelines live in
    [`mrsisr.pipelines`][mrsisr.pipelines]. Nothing outside a pipeline looks at its insides: the
    progress of a long chain comes through `sample(progress=)`, the parameter table through
    `parts()`, training through `training_stages()`.

    Attributes:
        nfe: Network evaluations per sample.
        recipe: The resolved [`Recipe`][mrsisr.recipes.Recipe] it was built from (like diffusers'
            `.config`), or `None` for a pipeline composed by hand.
    """

    nfe: int
    recipe: Any

    def sample(
        self,
        cond: Condition,
        generator: torch.Generator | None = None,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> Tensor:
        """Super-resolve a batch: `x0` estimates `(B, 1, H, W)`, masked, in [0, 1].

        `progress`, when given, is called with the number of network evaluations after each
        one (or after each group of them), adding up to `nfe` per call.
        """
        ...

    def parts(self) -> dict[str, tuple[Any, bool]]:
        """Part name → (module, counted in the paper's Table 1)."""
        ...

    def training_stages(self) -> list[Any]:
        """The [`Stage`][mrsisr.stages.Stage]s that train it, in order."""
        ...
