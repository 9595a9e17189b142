"""What every pipeline shares: parts and parameter counts, progress counting, `super_resolve`.

The contract a pipeline keeps is the [`Pipeline`][mrsisr.types.Pipeline] protocol. The helpers
here let the three built-in pipelines (and plugins) keep it without repeating themselves:

- [`pipeline_parts`][mrsisr.pipelines.base.pipeline_parts] and
  [`count_parameters`][mrsisr.pipelines.base.count_parameters] turn `parts()` into the parameter
  table of the paper's Table 1;
- [`CountingDenoiser`][mrsisr.pipelines.base.CountingDenoiser] reports each network evaluation of
  a chain to a `progress` callback;
- [`SuperResolveMixin`][mrsisr.pipelines.base.SuperResolveMixin] gives `pipe.super_resolve(lr)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from mrsisr.types import Condition

Progress = Callable[[int], None]
"""A progress callback: called with the number of network evaluations just done."""


class CountingDenoiser(nn.Module):
    """A denoiser that reports every call to a progress callback (one call = one evaluation).

    Args:
        denoiser: The network.
        progress: Called with `1` after every evaluation.
    """

    def __init__(self, denoiser: Any, progress: Progress) -> None:
        super().__init__()
        self.denoiser = denoiser
        self.progress = progress

    def forward(self, x_t: Tensor, t: Tensor, cond: Condition) -> Tensor:
        """Evaluate the wrapped denoiser and report it.

        Args:
            x_t: Noisy maps `(B, 1, H, W)`.
            t: Timesteps `(B,)`.
            cond: Conditions.

        Returns:
            The denoiser's output.
        """
        out = self.denoiser(x_t, t, cond)
        self.progress(1)
        return out


def report(progress: Progress | None, n: int) -> None:
    """Report `n` network evaluations, if anyone listens.

    Args:
        progress: The callback or `None`.
        n: Evaluations done (nothing is reported for 0).
    """
    if progress is not None and n > 0:
        progress(int(n))


class SuperResolveMixin:
    """Gives a pipeline `pipe.super_resolve(lr, ...)` (one map in, mean and std out) and `recipe`.

    `recipe` is `None` until [`Recipe.build`][mrsisr.recipes.Recipe.build] sets it (a pipeline
    composed by hand has none).

    See [`super_resolve_map`][mrsisr.pipelines.inference.super_resolve_map] for the conventions.
    """

    recipe: Any = None

    def super_resolve(self, lr: Any, **kwargs: Any) -> tuple[Any, Any]:
        """Super-resolve one 2-D map given as numpy arrays or tensors.

        Args:
            lr: The low-resolution map, `(L, L)` at its acquired matrix or `(64, 64)`.
            **kwargs: `t1`, `flair`, `mask`, `scale`, `samples` (4), `seed`, `metabolite`.

        Returns:
            `(mean, std)`: float32 numpy arrays `(64, 64)` in the units of `lr`.
        """
        from mrsisr.pipelines.inference import super_resolve_map

        return super_resolve_map(self, lr, **kwargs)


def _parts_of(obj: Any, default_name: str) -> dict[str, tuple[nn.Module, bool]]:
    if hasattr(obj, "parts"):
        return dict(obj.parts())
    if isinstance(obj, nn.Module) and any(True for _ in obj.parameters()):
        return {default_name: (obj, True)}
    return {}


def pipeline_parts(pipeline: Any) -> dict[str, tuple[nn.Module, bool]]:
    """Return the parts of any pipeline (its own `parts()`, else the pipeline as one part).

    Args:
        pipeline: A built pipeline.

    Returns:
        Part name → (module, counted in the total).
    """
    return _parts_of(pipeline, "model")


def count_parameters(pipeline: Any) -> dict[str, int]:
    """Count parameters per part and in total, the way the paper's Table 1 counts them.

    Discriminators, critics and frozen pre-networks are listed but left out of `total`.

    Args:
        pipeline: A built pipeline.

    Returns:
        `{"total": n, "<part>": n, ...}`.
    """
    counts: dict[str, int] = {"total": 0}
    for name, (module, counted) in pipeline_parts(pipeline).items():
        n = sum(p.numel() for p in module.parameters())
        counts[name] = n
        if counted:
            counts["total"] += n
    return counts
