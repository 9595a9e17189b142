"""Learning-rate schedules of training stages, as pure functions of the step.

The paper trains with Adam at 1e-4 "followed by a decay per iteration" (Sec. 3.1); `linear` is
that decay. Because the factor depends only on `(step, total)`, a run that is killed and resumed
sets exactly the learning rate an uninterrupted run would, with nothing to restore.
"""

from __future__ import annotations

import math

__all__ = ["LR_SCHEDULES", "lr_factor"]

LR_SCHEDULES = ("constant", "linear", "cosine")
"""Learning-rate schedules a stage can follow."""


def lr_factor(step: int, total: int, schedule: str = "constant", warmup: int = 0) -> float:
    """Multiplier of the base learning rate at optimiser step `step` (0-based) of `total`.

    A pure function of the step, so a resumed run sets exactly the rate an uninterrupted one
    would. After `warmup` steps rising linearly from `1 / warmup` to 1, `"linear"` falls
    linearly towards zero (the last step still moves: its factor is `1 / (total - warmup)`),
    `"cosine"` follows a half cosine down to the same last value, and `"constant"` stays at 1.

    Args:
        step: Optimiser step, 0-based.
        total: Planned steps of the stage.
        schedule: One of [`LR_SCHEDULES`][mrsisr.lr_schedules.LR_SCHEDULES].
        warmup: Warm-up steps.

    Returns:
        The factor in (0, 1].

    Examples:
        >>> [round(lr_factor(k, 4, "linear"), 2) for k in range(4)]
        [1.0, 0.75, 0.5, 0.25]
        >>> [round(lr_factor(k, 4, "linear", warmup=2), 2) for k in range(4)]
        [0.5, 1.0, 1.0, 0.5]
    """
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    span = max(total - warmup, 1)
    left = (total - step) / span  # 1 at the first step after warm-up, 1/span at the last
    if schedule == "linear":
        return left
    if schedule == "cosine":
        return max(0.5 * (1.0 - math.cos(math.pi * left)), 1.0 / span)
    raise ValueError(f"unknown lr schedule {schedule!r}")
