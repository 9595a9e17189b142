"""Scoring: sample a pipeline on given maps and score every map, with nothing else attached.

[`evaluate`][mrsisr.eval.scores.evaluate] is the pure core of the bench and of every study: one
model, one batch of maps, per-map NRMSE / PSNR / SSIM (and LPIPS when asked) plus the measured
sampling time. Which maps, which models and what is written are the callers' business.

Evaluation follows SPEC §2: each map is normalised by its own maximum, the low-resolution input is
the central `64/scale` block of its k-space, and the metrics are computed over the whole image in
original units after the prediction was masked and clamped to [0, 1].

Examples:
    >>> from mrsisr.eval.scores import select_maps
    >>> select_maps(10, limit=4, seed=0)
    [4, 6, 2, 7]
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mrsisr.eval.report import METRICS
from mrsisr.pipelines import count_parameters

__all__ = [
    "Model",
    "Scores",
    "cat_batches",
    "cat_conditions",
    "evaluate",
    "evaluate_parts",
    "gather",
    "merge_shards",
    "score_maps",
    "select_maps",
    "warm_up",
]


def select_maps(n: int, limit: int | None, seed: int = 0) -> list[int]:
    """Choose which of `n` test maps to score, and in which order: a seeded random order.

    The order is the seeded permutation itself, so every prefix is a random subset too: the
    1000-NFE rows that score only the first `slow_limit` maps get maps from every subject, not
    the first subject's (dataset indices run subject by subject).

    Args:
        n: Number of available maps.
        limit: Maps to keep (`None` or `>= n`: all).
        seed: Seed of the choice.

    Returns:
        Indices into the dataset, in scoring order.
    """
    rng = np.random.default_rng(seed)
    order = [int(i) for i in rng.permutation(n)]
    return order if limit is None else order[:limit]


@dataclass
class Model:
    """A pipeline under test, with its name and where its weights came from.

    Attributes:
        name: Row name.
        pipe: The pipeline (a [`Pipeline`][mrsisr.types.Pipeline]).
        weights: `shipped`, a path, `untrained` or `given`.
        nfe: Network evaluations per map (from the pipeline).
        params: Parameters counted as in Table 1 (from the pipeline).
    """

    name: str
    pipe: Any
    weights: str = "given"
    nfe: int = field(init=False)
    params: int = field(init=False)

    def __post_init__(self) -> None:
        self.nfe = int(self.pipe.nfe)
        self.params = int(count_parameters(self.pipe)["total"])


@dataclass
class Scores:
    """One model's scores on one batch of maps.

    Attributes:
        values: Metric → per-map values, in the maps' order.
        seconds: Sampling time over all the maps (after a warm-up call).
        pred: The predictions `(N, 1, H, W)` in [0, 1] (for figures), or `None` for no maps.
    """

    values: dict[str, np.ndarray]
    seconds: float = 0.0
    pred: torch.Tensor | None = None


def score_maps(pred: torch.Tensor | None, maps: Any, lpips: Sequence[str] = ()) -> dict[str, Any]:
    """Score predictions against the maps' ground truth, in original units.

    Args:
        pred: Predictions `(N, 1, H, W)` in [0, 1] (masked here), or `None` for no maps.
        maps: The [`Batch`][mrsisr.types.Batch] they were made from (its first `N` maps).
        lpips: LPIPS backbones to add (`"alex"`, `"vgg"`).

    Returns:
        Metric → `(N,)` numpy array.
    """
    from mrsisr.metrics import batch_metrics

    keys = list(METRICS) + [f"lpips_{n}" for n in lpips]
    if pred is None or len(pred) == 0:
        return {k: np.zeros(0) for k in keys}
    maps = maps[: len(pred)]
    top = maps.max_value.view(-1, 1, 1, 1)
    pred = pred * maps.cond.mask * top
    gt = maps.x0 * top
    out = {k: v.cpu().numpy() for k, v in batch_metrics(pred, gt).items()}
    if lpips:
        from mrsisr.perceptual import batch_lpips

        for net in lpips:
            out[f"lpips_{net}"] = batch_lpips(pred, gt, net).cpu().numpy()
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _WarmedUp(Exception):
    """Raised from the progress callback to end a warm-up call early."""


def warm_up(pipe: Any, cond: Any, generator: torch.Generator | None = None) -> None:
    """Run a pipeline's networks once or twice so that timings exclude one-time costs.

    The call is cut short through `sample(progress=)` after `min(nfe, 2)` network evaluations
    (the initializer and the first denoiser step of a chain), so a 1000-step model costs two
    evaluations, not a whole chain.

    Args:
        pipe: The pipeline.
        cond: Conditions of one or two maps.
        generator: Random generator.
    """
    need, done = min(int(pipe.nfe), 2), [0]

    def count(n: int) -> None:
        done[0] += n
        if done[0] >= need:
            raise _WarmedUp

    try:
        with torch.no_grad():
            pipe.sample(cond, generator=generator, progress=count)
    except _WarmedUp:
        pass


def evaluate(
    pipe: Any,
    maps: Any,
    *,
    batch: int | None = None,
    generator: torch.Generator | None = None,
    lpips: Sequence[str] = (),
    progress: Callable[[int], None] | None = None,
) -> Scores:
    """Sample a pipeline on every map of a batch, timed after one warm-up call, and score it.

    Args:
        pipe: The pipeline.
        maps: A [`Batch`][mrsisr.types.Batch] on the pipeline's device.
        batch: Maps per sampling call (`None`: all at once).
        generator: Random generator of the sampling noise.
        lpips: LPIPS backbones to score as well.
        progress: Passed to `pipe.sample(progress=)`.

    Returns:
        The [`Scores`][mrsisr.eval.scores.Scores].
    """
    n = len(maps.x0)
    if n == 0:
        return Scores(score_maps(None, maps, lpips))
    device = maps.x0.device
    warm_up(pipe, maps.cond[: min(2, n)], generator)
    step = batch or n
    preds, seconds = [], 0.0
    for start in range(0, n, step):
        cond = maps.cond[start : min(start + step, n)]
        _sync(device)
        t0 = time.perf_counter()
        with torch.no_grad():
            preds.append(pipe.sample(cond, generator=generator, progress=progress))
        _sync(device)
        seconds += time.perf_counter() - t0
    pred = torch.cat(preds)
    return Scores(score_maps(pred, maps, lpips), seconds, pred)


def cat_batches(parts: Sequence[Any]) -> Any:
    """Join batches of maps (e.g. one per upscaling factor) into one, in order.

    Args:
        parts: [`Batch`][mrsisr.types.Batch]es of 64×64 maps on one device.

    Returns:
        One batch; `cond.measured` is kept only when every part has it (as in
        [`collate`][mrsisr.data.dataset.collate]).
    """
    from dataclasses import fields, replace

    first = parts[0]
    return replace(
        first,
        **{
            f.name: _join([getattr(b, f.name) for b in parts])
            for f in fields(first)
            if f.name != "cond"
        },
        cond=cat_conditions([b.cond for b in parts]),
    )


def cat_conditions(conds: Sequence[Any]) -> Any:
    """Join conditions along the batch axis, in order.

    Args:
        conds: [`Condition`][mrsisr.types.Condition]s on one device.

    Returns:
        One condition; a field that some condition lacks (e.g. `measured`) is `None`.
    """
    from dataclasses import fields

    from mrsisr.types import Condition

    return Condition(
        **{f.name: _join([getattr(c, f.name) for c in conds]) for f in fields(conds[0])}
    )


def _join(values: list[Any]) -> Any:
    if any(v is None for v in values):
        return None
    return torch.cat(values) if isinstance(values[0], torch.Tensor) else sum(values, [])


def evaluate_parts(
    pipe: Any,
    parts: Sequence[Any],
    *,
    batch: int | None = None,
    generator: torch.Generator | None = None,
    lpips: Sequence[str] = (),
    progress: Callable[[int], None] | None = None,
) -> list[Scores]:
    """Sample several batches of maps together and score each, as [`evaluate`][mrsisr.eval.scores.evaluate].

    A 1000-step chain on one or two maps per upscaling factor leaves a CPU mostly idle: sampling
    the maps of every factor in the same calls (they differ only in their conditions) costs about
    as much per call as one factor's alone. The sampling time is shared out in proportion to the
    parts' sizes.

    Args:
        pipe: The pipeline.
        parts: [`Batch`][mrsisr.types.Batch]es (e.g. one per upscaling factor).
        batch: Maps per sampling call over the joined maps (`None`: all at once).
        generator: Random generator of the sampling noise.
        lpips: LPIPS backbones to score as well.
        progress: Passed to `pipe.sample(progress=)`.

    Returns:
        One [`Scores`][mrsisr.eval.scores.Scores] per part, in order.
    """
    sizes = [len(b.x0) for b in parts]
    got = evaluate(
        pipe, cat_batches(parts), batch=batch, generator=generator, lpips=lpips, progress=progress
    )
    total, out, start = max(sum(sizes), 1), [], 0
    for n in sizes:
        pred = None if got.pred is None else got.pred[start : start + n]
        values = {k: np.asarray(v)[start : start + n] for k, v in got.values.items()}
        out.append(Scores(values, got.seconds * n / total, pred))
        start += n
    return out


def _dist() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather(obj: Any) -> list[Any]:
    """Gather a picklable object from every rank (a list of one without torchrun).

    Args:
        obj: This rank's object.

    Returns:
        Every rank's object, by rank.
    """
    import torch.distributed as dist

    rank, world = _dist()
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def merge_shards(parts: list[dict[str, np.ndarray]], n: int, world: int) -> dict[str, np.ndarray]:
    """Undo the `maps[rank::world]` sharding of per-map scores: back to the maps' order.

    Args:
        parts: Each rank's scores, by rank.
        n: Maps in all.
        world: Number of ranks.

    Returns:
        Metric → `(n,)` array.
    """
    out = {}
    for k in parts[0]:
        full = np.empty(n)
        for rank, part in enumerate(parts):
            full[rank::world] = part[k]
        out[k] = full
    return out
