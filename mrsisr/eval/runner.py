"""One bench run's machinery: which maps, which model on which of them, and the figure.

[`run_bench`][mrsisr.eval.bench.run_bench] builds a `BenchRun` and calls `run_scale` for each
upscaling factor; the options and the public results live in [`mrsisr.eval.bench`][mrsisr.eval.bench].
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import numpy as np
import torch

from mrsisr.errors import DataError
from mrsisr.eval.models import wants_phase
from mrsisr.eval.report import LR_INPUT, BenchRow, summarize
from mrsisr.eval.scores import (
    Model,
    evaluate,
    evaluate_parts,
    gather,
    merge_shards,
    score_maps,
    select_maps,
)

__all__ = ["SLOW_NFE", "BenchRun"]

SLOW_NFE = 500
"""Models with at least this many network evaluations per map run on `slow_limit` maps."""


class BenchRun:
    """One bench run: its options, models and everything measured so far.

    Args:
        cfg: The options (a [`BenchConfig`][mrsisr.eval.bench.BenchConfig]).
        models: The loaded models; the first is the reference of the Wilcoxon tests.
        on_row: Called with each row as soon as it is measured (rank 0), or `None`.
    """

    def __init__(self, cfg: Any, models: list[Model], on_row: Any) -> None:
        from mrsisr.eval.scores import _dist

        self.cfg, self.models, self.on_row = cfg, models, on_row
        self.rank, self.world = _dist()
        self.device = torch.device(cfg.device)
        self.rows: list[BenchRow] = []
        self.scores: dict[tuple[str, int], dict[str, np.ndarray]] = {}
        self.grid: dict[int, dict[str, Any]] = {}
        self.maps: list[tuple[str, str, int]] = []
        self.first = models[0].name
        self.digests: dict[str, str] = {}
        self.map_digests: dict[int, str] = {}
        self.batches: dict[int, tuple[Any, list[int]]] = {}
        self.joint: dict[str, dict[int, Any]] = {}
        self.subjects: Any = None
        self.test_ids: list[str] = []
        self.uq: dict[int, tuple[Any, Any, Any]] = {}  # scale -> (cond, max value, scored draw)

    def fingerprint(self, model: Model) -> str:
        """The digest of a model's weights (computed once), which cached rows must match."""
        from mrsisr.eval.cache import fingerprint

        if model.name not in self.digests:
            self.digests[model.name] = fingerprint(model.pipe)
        return self.digests[model.name]

    def digest(self, model: Model, scale: int, joint: bool) -> str:
        """What a kept row must match: the weights, the maps and how they were drawn."""
        return f"{self.fingerprint(model)}|{self.map_digests[scale]}" + ("|joint" if joint else "")

    def n_maps(self, model: Model, chosen: int) -> int:
        """Maps a model scores: all chosen ones, or the first `slow_limit` for a slow model."""
        if self.cfg.slow_limit is not None and model.nfe >= SLOW_NFE:
            return min(chosen, int(self.cfg.slow_limit))
        return chosen

    def emit(self, row: BenchRow) -> None:
        """Keep a measured row and hand it to `on_row` (rank 0)."""
        self.rows.append(row)
        if self.on_row is not None and self.rank == 0:
            self.on_row(row)

    def joins_scales(self, model: Model) -> bool:
        """Whether a slow model samples its maps of every scale in the same calls.

        So it does when its `slow_limit` maps of all scales fit in one call (one process): a
        1000-step chain on one map per call leaves most of a CPU idle. Decided by the options
        alone, so a run with the same options draws the same noise.
        """
        if self.world > 1 or len(self.cfg.scales) < 2 or model.nfe < SLOW_NFE:
            return False
        if self.cfg.slow_limit is None:
            return False
        total = int(self.cfg.slow_limit) * len(self.cfg.scales)
        return self.cfg.batch is None or total <= int(self.cfg.batch)

    def scale_maps(self, scale: int) -> tuple[Any, list[int]]:
        """This scale's chosen test maps as one batch on the device (built once per scale)."""
        from mrsisr.data import MRSIDataset, collate

        if scale in self.batches:
            return self.batches[scale]
        lr_size = int(round(64 / scale))
        phase = any(wants_phase(m.name) for m in self.models)  # `+dcp` rows: the complex data
        dataset = MRSIDataset(
            self.subjects,
            lr_size=lr_size,
            subject_ids=self.test_ids,
            measured="simulate" if phase else "none",
        )
        chosen = select_maps(len(dataset), self.cfg.limit, self.cfg.seed)
        if not chosen:
            raise DataError("no test maps with a non-empty mask in this fold")
        self.maps = self.maps or [_identity(dataset, i) for i in chosen]
        # kept rows must belong to these very maps (a data folder may change between runs)
        self.map_digests[scale] = _digest([_identity(dataset, i) for i in chosen])
        mine = chosen[self.rank :: self.world]
        full = collate([dataset[i] for i in mine or chosen[:1]]).to(self.device)
        if not mine:  # more ranks than maps: this rank scores nothing but joins every gather
            full = full[:0]
        self.batches[scale] = full, chosen
        return full, chosen

    def run_scale(self, scale: int, bar: Any) -> None:
        """Score every model (and the LR input) on this scale's chosen maps."""
        full, chosen = self.scale_maps(scale)
        lr_pred = full.cond.lr.clamp(0, 1)
        lr_scores = merge_shards(
            gather(score_maps(lr_pred, full, self.cfg.lpips)), len(chosen), self.world
        )
        common = min(self.n_maps(m, len(chosen)) for m in self.models)
        fig_idx = _figure_index(full[: max(len(range(self.rank, common, self.world)), 1)])
        for model in self.models:
            self.run_model(model, full, len(chosen), scale, lr_scores, fig_idx, bar)
        if self.cfg.baseline:
            self.scores[(LR_INPUT, scale)] = lr_scores
            self.emit(summarize(LR_INPUT, scale, lr_scores, ref=self.scores[(self.first, scale)]))

    def run_model(
        self,
        model: Model,
        full: Any,
        chosen: int,
        scale: int,
        lr_scores: dict[str, np.ndarray],
        fig_idx: int,
        bar: Any,
    ) -> None:
        """Score one model at one scale; gather the ranks; add its row and figure panel."""
        full = _for_model(model, full)
        n_sel = self.n_maps(model, chosen)
        mine_n = len(range(self.rank, n_sel, self.world))  # this rank's share of the first n_sel
        step = self.cfg.batch or max(1, len(full.x0))
        joint = self.joins_scales(model)
        calls = -(-mine_n // step) if mine_n else 0
        task = (  # a joint model has one task for all its scales (in joint_scores)
            bar.add_task(f"{model.name} ×{scale:g}", total=max(model.nfe * calls, 1))
            if bar is not None and not joint
            else None
        )
        gen = torch.Generator(device=self.device).manual_seed(self.cfg.seed * 1009 + 64 // scale)
        tick = (lambda n: bar.advance(task, n)) if task is not None else None
        cache = self.cfg.cache
        digest = self.digest(model, scale, joint) if cache is not None else ""
        drawn = joint and model.name in self.joint  # this scale came with an earlier one's
        kept = (
            cache.get(model.name, scale, n_sel, digest) if cache is not None and not drawn else None
        )
        if kept is not None:  # scored by an earlier, interrupted run with the same settings
            merged, seconds = kept
        else:
            if joint:
                got = self.joint_scores(model, bar)[scale]
            else:
                got = evaluate(
                    model.pipe,
                    full[:mine_n],
                    batch=step,
                    generator=gen,
                    lpips=self.cfg.lpips,
                    progress=tick,
                )
            shards = gather((got.values, got.seconds))
            merged = merge_shards([s[0] for s in shards], n_sel, self.world)
            seconds = max(s[1] for s in shards)
            if cache is not None and self.rank == 0:
                cache.put(model.name, scale, n_sel, merged, seconds, digest)
            if self.rank == 0 and got.pred is not None and fig_idx < mine_n:
                self.add_figure(model, full, fig_idx, scale, got.pred)
        if task is not None:
            bar.update(task, completed=bar.tasks[task].total)
        self.scores[(model.name, scale)] = merged
        self.emit(
            summarize(
                model.name,
                scale,
                merged,
                ref=self.scores.get((self.first, scale)),
                lr=lr_scores,
                nfe=model.nfe,
                sec_per_slice=seconds / max(n_sel, 1),
                params=model.params,
                weights=model.weights,
            )
        )

    def joint_scores(self, model: Model, bar: Any) -> dict[int, Any]:
        """A slow model's scores at every scale, its maps of all scales sampled in the same
        calls (see `joins_scales`); computed once."""
        if model.name not in self.joint:
            scales = [int(s) for s in self.cfg.scales]
            parts = []
            for s in scales:
                full, chosen = self.scale_maps(s)
                parts.append(_for_model(model, full)[: self.n_maps(model, len(chosen))])
            n = sum(len(p.x0) for p in parts)
            step = self.cfg.batch or max(n, 1)
            label = f"{model.name} ×{','.join(str(s) for s in scales)}"
            total = max(model.nfe * -(-n // step), 1)
            task = bar.add_task(label, total=total) if bar is not None else None
            gen = torch.Generator(device=self.device).manual_seed(self.cfg.seed * 1009 + 1)
            got = evaluate_parts(
                model.pipe,
                parts,
                batch=step,
                generator=gen,
                lpips=self.cfg.lpips,
                progress=(lambda k: bar.advance(task, k)) if bar is not None else None,
            )
            if task is not None:
                bar.update(task, completed=total)
            self.joint[model.name] = dict(zip(scales, got, strict=True))
            cache = self.cfg.cache
            if cache is not None:  # every scale at once: a resumed run need not draw them again
                for s, part, g in zip(scales, parts, got, strict=True):
                    digest = self.digest(model, s, True)
                    cache.put(model.name, s, len(part.x0), g.values, g.seconds, digest)
        return self.joint[model.name]

    def add_figure(self, model: Model, full: Any, i: int, scale: int, pred: Any) -> None:
        """Add a model's panel to the scale's figure; for the first model, keep what its
        uncertainty needs (drawn for every scale at once by `add_uncertainty`)."""
        fig = self.grid.setdefault(scale, _grid_base(full, i, scale))
        fig[model.name] = (pred[i, 0] * full.max_value[i]).cpu().numpy()
        if model.name == self.first and self.cfg.uq_samples > 1:
            self.uq[scale] = (full.cond[i : i + 1], full.max_value[i], pred[i : i + 1].clone())

    def add_uncertainty(self, bar: Any) -> None:
        """The first model's per-pixel std on each scale's figure map, over `uq_samples`
        draws: the scored one and `uq_samples - 1` more, those of every scale sampled in the
        same calls (`batch` at a time) with one generator of their own (seed · 1009 + 2).

        A scale's extra draws therefore depend on which scales have a first-model panel (rows
        read back from a cache have none, nor get a std map) and on `batch`: the std map is
        reproducible for the same options and cache, the scores always.
        """
        if not self.uq:
            return
        from mrsisr.eval.scores import cat_conditions

        model = next(m for m in self.models if m.name == self.first)
        extra = int(self.cfg.uq_samples) - 1
        scales = list(self.uq)
        cond = cat_conditions([self.uq[s][0].repeat(extra) for s in scales])
        step = int(self.cfg.batch or len(cond.lr))
        calls = -(-len(cond.lr) // step)
        total = max(model.nfe * calls, 1)
        task = bar.add_task(f"{model.name} std", total=total) if bar is not None else None
        gen = torch.Generator(device=self.device).manual_seed(self.cfg.seed * 1009 + 2)
        tick = (lambda n: bar.advance(task, n)) if task is not None else None
        with torch.no_grad():
            x = torch.cat(
                [
                    model.pipe.sample(cond[k : k + step], generator=gen, progress=tick)
                    for k in range(0, len(cond.lr), step)
                ]
            )
        if task is not None:
            bar.update(task, completed=total)
        for j, s in enumerate(scales):
            _, peak, scored = self.uq[s]
            both = torch.cat([scored, x[j * extra : (j + 1) * extra]]) * peak
            self.grid[s]["std"] = both[:, 0].std(0).cpu().numpy()
            self.grid[s]["std_model"] = model.name


def _for_model(model: Model, full: Any) -> Any:
    """The maps as a model sees them: the complex acquisition only for `+dcp` rows."""
    if not wants_phase(model.name) and full.cond.measured is not None:
        return dataclasses.replace(full, cond=dataclasses.replace(full.cond, measured=None))
    return full


def _digest(items: Any) -> str:
    """A short digest of JSON-able data (e.g. the identities of the maps scored)."""
    return hashlib.sha256(json.dumps(items, default=str).encode()).hexdigest()[:16]


def _identity(dataset: Any, i: int) -> tuple[str, str, int]:
    si, met, k = dataset.items[i]
    return dataset.subjects[si].subject, met, int(k)


def _figure_index(batch: Any) -> int:
    """The map with the largest mask: the most informative one for the figure."""
    areas = batch.cond.mask.flatten(1).sum(1)
    return int(areas.argmax()) if len(areas) else 0


def _grid_base(batch: Any, i: int, scale: int) -> dict[str, Any]:
    m = float(batch.max_value[i])
    return {
        "lr": (batch.cond.lr[i, 0].clamp(0, 1) * batch.cond.mask[i, 0] * m).cpu().numpy(),
        "gt": (batch.x0[i, 0] * m).cpu().numpy(),
        "mask": batch.cond.mask[i, 0].cpu().numpy(),
        "title": f"{batch.subject[i]} {batch.metabolite[i]} slice {batch.slice_index[i]}",
        "scale": scale,
    }
