"""Side-by-side benchmark of pipelines on the same maps: the paper's Table 1 protocol.

[`run_bench`][mrsisr.eval.bench.run_bench] super-resolves the same test maps with every model at
every upscaling factor and reports, per model and scale, the number of network evaluations (NFE),
the measured seconds per slice (one 64×64 map; batched sampling, timed after a warm-up), the
number of parameters (counted as in Table 1) and NRMSE / PSNR / SSIM as mean ± standard deviation
over the maps, with paired two-sided Wilcoxon p-values against the first model and against the
zero-filled low-resolution input, which is added as a reference row (`lr_input`).

The options travel in a [`BenchConfig`][mrsisr.eval.bench.BenchConfig]; scoring is
[`evaluate`][mrsisr.eval.scores.evaluate], tables and files are [`mrsisr.eval.report`][mrsisr.eval.report],
the figure is [`save_grid`][mrsisr.eval.figures.save_grid].

Under `torchrun --nproc_per_node=N` the maps are sharded over the ranks and the scores gathered on
rank 0, which alone prints and writes.
"""

from __future__ import annotations

import dataclasses
import os
import platform
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mrsisr.errors import DataError, MrsisrError
from mrsisr.eval.figures import save_grid
from mrsisr.eval.models import load_models, split_variant, wants_phase
from mrsisr.eval.report import LR_INPUT, BenchRow, summarize, write_csv_rows, write_json
from mrsisr.eval.scores import Model, evaluate, gather, merge_shards, score_maps, select_maps
from mrsisr.runtime import check_runtime

__all__ = [
    "BENCH_SCALES",
    "DEFAULT_LIMIT",
    "DEFAULT_SLOW_LIMIT",
    "BenchConfig",
    "BenchResult",
    "BenchRow",
    "run_bench",
    "select_maps",
    "split_variant",
]

BENCH_SCALES: tuple[int, ...] = (8, 4, 2)
"""The paper's upscaling factors (low-resolution matrices 8×8, 16×16 and 32×32)."""

DEFAULT_LIMIT = 10
"""Default maps per scale of `mrsisr bench`: enough for a paired Wilcoxon p down to 0.002.

The 101-NFE models at `small` size took 3.7 s per map on the 2-core build machine on 2026-12-01
and 5.6-6.5 s on 2026-12-02 (the same machine type on a slower host: 57 against about 36 ms per
image and network evaluation). DDPM's 1000 network evaluations (40-105 s per map) run on
`DEFAULT_SLOW_LIMIT` of the same maps.
"""

DEFAULT_SLOW_LIMIT = 1
"""Default maps per scale of 1000-NFE models in `mrsisr bench` (a demonstration that they run and
what they cost; their statistics need `--slow-limit 20`, as in the docs' tables)."""

SLOW_NFE = 500
"""Models with at least this many network evaluations per map run on `slow_limit` maps."""

BENCH_MARKER = "results.json"
"""The file that marks a folder as a `mrsisr bench` output (it may then be replaced)."""


@dataclass
class BenchConfig:
    """The options of a bench.

    Attributes:
        scales: Upscaling factors.
        data: `"phantom"` or a dataset folder (real-data layout).
        fold: Fold whose test subjects are scored.
        limit: Maps per scale (a seeded subset of the test maps; `None`: all of them).
        slow_limit: Maps per scale for models with 500 or more network evaluations (DDPM-1000):
            the first `slow_limit` of the same seeded subset, so their rows pair with the others
            on those maps. `None`: the same as `limit`.
        size: Size variant of recipe names.
        seed: Seed of the map choice and of the sampling noise.
        device: `cpu` or `cuda`.
        batch: Maps per sampling call (`None`: all maps of a scale at once).
        weights: Model name → weights file or run folder, instead of the shipped weights.
        untrained: Allow recipes without weights (random weights: timings only).
        overrides: Recipe overrides applied to every recipe name (e.g. sampler settings).
        uq_samples: Samples of the first model on the figure's map, for its uncertainty (std)
            map; 0 or 1 skips it.
        baseline: Add the zero-filled low-resolution input as the `lr_input` row.
        lpips: LPIPS backbones to score as well (`"alex"`, `"vgg"`; see
            [`mrsisr.perceptual`][mrsisr.perceptual]).
        progress: Show a progress bar (advanced per network evaluation).
        channels_last: Store the networks' 4-D weights in channels-last memory format (the
            same results; 7-37% less time per network evaluation in `benchmarks/perf.py`'s
            measurements on a 2-core CPU, see the docs).
        precision: `fp32`, `bf16` or `fp16`: sample under autocast at that precision (see
            [`mrsisr.runtime`][mrsisr.runtime]).
        compile: A `torch.compile` backend for the networks, or `None`.
        cache: A [`ScoreCache`][mrsisr.eval.cache.ScoreCache]: rows it holds are read back
            instead of sampled (no figure panel), new rows are added to it as they are scored.
    """

    scales: Sequence[int] = BENCH_SCALES
    data: str | os.PathLike[str] = "phantom"
    fold: int = 0
    limit: int | None = DEFAULT_LIMIT
    slow_limit: int | None = None
    size: str = "small"
    seed: int = 0
    device: str | torch.device = "cpu"
    batch: int | None = None
    weights: Mapping[str, str] | None = None
    untrained: bool = False
    overrides: Mapping[str, Any] | None = None
    uq_samples: int = 4
    baseline: bool = True
    lpips: Sequence[str] = ()
    progress: bool = True
    channels_last: bool = False
    precision: str = "fp32"
    compile: str | None = None
    cache: Any = None

    def check(self) -> None:
        """Refuse unusable options before any work.

        Raises:
            DataError: For a scale that is not a whole, even matrix between 8 and 64.
            MrsisrError: For an unavailable device or a batch below 1.
        """
        for s in self.scales:
            s = int(s)
            if s <= 0 or 64 % s or (64 // s) % 2 or not 8 <= 64 // s <= 64:
                raise DataError(f"`scales`: {s} is not usable; choose factors such as 8, 4, 2")
        if torch.device(self.device).type == "cuda" and not torch.cuda.is_available():
            raise MrsisrError("`device` cuda: no CUDA device is available here; use `device` cpu")
        if self.batch is not None and self.batch < 1:
            raise MrsisrError(f"`batch` must be at least 1, got {self.batch}")
        check_runtime(self.precision, self.compile)

    def to_dict(self) -> dict[str, Any]:
        """The options as JSON-able data, for `results.json`.

        Returns:
            Field → value.
        """
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out.update(
            scales=[int(s) for s in self.scales],
            data=str(self.data),
            device=str(self.device),
            weights=dict(self.weights or {}),
            lpips=list(self.lpips),
        )
        out.pop("overrides")
        out.pop("cache")
        return out


@dataclass
class BenchResult:
    """Everything a bench measured.

    Attributes:
        rows: One [`BenchRow`][mrsisr.eval.report.BenchRow] per model and scale.
        scores: `(model, scale) -> {metric: (N,) array}`: the per-map scores, same maps in the
            same order for every model.
        maps: The scored maps as `(subject, metabolite, slice)`.
        config: The bench's settings.
        machine: Where it ran, e.g. `cpu (x86_64, 2 threads)`.
        grid: Images for the qualitative figure, per scale: `lr`, `gt`, `mask`, one prediction per
            model and the first model's `std` (see [`save_grid`][mrsisr.eval.figures.save_grid]).
    """

    rows: list[BenchRow]
    scores: dict[tuple[str, int], dict[str, np.ndarray]]
    maps: list[tuple[str, str, int]]
    config: dict[str, Any]
    machine: str
    grid: dict[int, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-able summary written to `results.json`.

        Returns:
            `{"rows": [...], "config": {...}, "machine": str, "maps": [...], "scores": {...}}`;
            `scores["MODEL@SCALE"][metric]` lists the per-map values in the order of `maps` (a
            slow model's list is shorter: its first maps), so other runs on the same maps can be
            paired with them.
        """
        return {
            "rows": [asdict(r) for r in self.rows],
            "config": self.config,
            "machine": self.machine,
            "maps": [list(m) for m in self.maps],
            "scores": {
                f"{model}@{scale}": {
                    k: [float(x) if np.isfinite(x) else None for x in np.asarray(v, dtype=float)]
                    for k, v in s.items()
                }
                for (model, scale), s in self.scores.items()
            },
        }

    def save(self, out: str | os.PathLike[str]) -> list[Path]:
        """Write `results.json`, `results.csv` and `grid.png` as the folder `out`.

        `out` must be new, empty, or an earlier bench output (it holds `results.json`); the
        whole folder is written under a temporary name and swapped in (see
        [`mrsisr.outputs`][mrsisr.outputs]).

        Args:
            out: Output folder.

        Returns:
            The written files.

        Raises:
            MrsisrError: If `out` is not a folder the bench may replace.
        """
        from mrsisr.outputs import atomic_dir, prepare_out

        out = prepare_out(out, marker=BENCH_MARKER, command="mrsisr bench")
        names = ["results.json", "results.csv"] + (["grid.png"] if self.grid else [])
        with atomic_dir(out) as tmp:
            write_json(tmp / "results.json", self.to_dict())
            write_csv_rows(tmp / "results.csv", [asdict(r) for r in self.rows])
            if self.grid:
                save_grid(self, tmp / "grid.png")
        return [out / n for n in names]


class _Bench:
    """One bench run: its options, models and everything measured so far."""

    def __init__(self, cfg: BenchConfig, models: list[Model], on_row: Any) -> None:
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
        self.map_digest = ""

    def fingerprint(self, model: Model) -> str:
        """The digest of a model's weights (computed once), which cached rows must match."""
        from mrsisr.eval.cache import fingerprint

        if model.name not in self.digests:
            self.digests[model.name] = fingerprint(model.pipe)
        return self.digests[model.name]

    def n_maps(self, model: Model, chosen: int) -> int:
        """Maps a model scores: all chosen ones, or the first `slow_limit` for a slow model."""
        if self.cfg.slow_limit is not None and model.nfe >= SLOW_NFE:
            return min(chosen, int(self.cfg.slow_limit))
        return chosen

    def emit(self, row: BenchRow) -> None:
        self.rows.append(row)
        if self.on_row is not None and self.rank == 0:
            self.on_row(row)

    def run_scale(self, subjects: Any, test_ids: list[str], scale: int, bar: Any) -> None:
        """Score every model (and the LR input) on this scale's chosen maps."""
        from mrsisr.data import MRSIDataset, collate

        lr_size = int(round(64 / scale))
        phase = any(wants_phase(m.name) for m in self.models)  # `+dcp` rows: the complex data
        dataset = MRSIDataset(
            subjects,
            lr_size=lr_size,
            subject_ids=test_ids,
            measured="simulate" if phase else "none",
        )
        chosen = select_maps(len(dataset), self.cfg.limit, self.cfg.seed)
        if not chosen:
            raise DataError("no test maps with a non-empty mask in this fold")
        self.maps = self.maps or [_identity(dataset, i) for i in chosen]
        # kept rows must belong to these very maps (a data folder may change between runs)
        self.map_digest = _digest([_identity(dataset, i) for i in chosen])
        mine = chosen[self.rank :: self.world]
        full = collate([dataset[i] for i in mine or chosen[:1]]).to(self.device)
        if not mine:  # more ranks than maps: this rank scores nothing but joins every gather
            full = full[:0]
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
        if not wants_phase(model.name) and full.cond.measured is not None:
            full = dataclasses.replace(full, cond=dataclasses.replace(full.cond, measured=None))
        n_sel = self.n_maps(model, chosen)
        mine_n = len(range(self.rank, n_sel, self.world))  # this rank's share of the first n_sel
        step = self.cfg.batch or max(1, len(full.x0))
        calls = -(-mine_n // step) if mine_n else 0
        task = (
            bar.add_task(f"{model.name} ×{scale:g}", total=max(model.nfe * calls, 1))
            if bar
            else None
        )
        gen = torch.Generator(device=self.device).manual_seed(self.cfg.seed * 1009 + 64 // scale)
        tick = (lambda n: bar.advance(task, n)) if bar is not None else None
        cache = self.cfg.cache
        digest = f"{self.fingerprint(model)}|{self.map_digest}" if cache is not None else ""
        kept = cache.get(model.name, scale, n_sel, digest) if cache is not None else None
        if kept is not None:  # scored by an earlier, interrupted run with the same settings
            merged, seconds = kept
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
                self.add_figure(model, full, fig_idx, scale, got.pred, gen)
        if bar is not None:
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

    def add_figure(
        self, model: Model, full: Any, i: int, scale: int, pred: Any, gen: torch.Generator
    ) -> None:
        fig = self.grid.setdefault(scale, _grid_base(full, i, scale))
        fig[model.name] = (pred[i, 0] * full.max_value[i]).cpu().numpy()
        if model.name == self.first and self.cfg.uq_samples > 1:
            cond = full.cond[i : i + 1].repeat(self.cfg.uq_samples)
            with torch.no_grad():
                x = model.pipe.sample(cond, generator=gen) * full.max_value[i]
            fig["std"] = x[:, 0].std(0).cpu().numpy()
            fig["std_model"] = model.name


def _digest(items: Any) -> str:
    """A short digest of JSON-able data (e.g. the identities of the maps scored)."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(items, default=str).encode()).hexdigest()[:16]


def run_bench(
    models: Sequence[str | tuple[str, Any]],
    config: BenchConfig | None = None,
    *,
    on_row: Callable[[BenchRow], None] | None = None,
    **options: Any,
) -> BenchResult:
    """Benchmark models side by side on the same test maps.

    Args:
        models: Recipe names (with shipped or given weights; `NAME+dc` adds k-space data
            consistency), or `(label, pipeline)` pairs for pipelines built in Python; the first
            is the reference of the Wilcoxon tests.
        config: The options; `None` uses the defaults of
            [`BenchConfig`][mrsisr.eval.bench.BenchConfig].
        on_row: Called with each row as soon as it is measured.
        **options: [`BenchConfig`][mrsisr.eval.bench.BenchConfig] fields that replace the
            config's (e.g. `limit=100, scales=[4]`).

    Returns:
        The [`BenchResult`][mrsisr.eval.bench.BenchResult] (complete on rank 0 under torchrun).

    Raises:
        CheckpointError: If a model has no weights (before any sampling).
        DataError: If the data or a scale is unusable.
        MrsisrError: For an unknown option, a repeated model name or an unavailable device.
    """
    from mrsisr.data import fold_split, load_dataset
    from mrsisr.data.splits import resolve_data
    from mrsisr.devices import describe_device

    known = {f.name for f in dataclasses.fields(BenchConfig)}
    if set(options) - known:
        raise MrsisrError(f"run_bench: unknown option(s) {', '.join(sorted(set(options) - known))}")
    cfg = dataclasses.replace(config or BenchConfig(), **options)
    cfg.check()
    bench = _Bench(cfg, load_models(models, cfg), on_row)
    subjects = load_dataset(resolve_data(cfg.data))
    _, _, test_ids = fold_split([s.subject for s in subjects], cfg.fold)
    if not test_ids:
        raise DataError(f"fold {cfg.fold} has no test subjects; use more subjects or another fold")
    bar = _progress_bar(cfg.progress and bench.rank == 0)
    with bar if bar is not None else nullcontext():
        for scale in cfg.scales:
            bench.run_scale(subjects, list(test_ids), int(scale), bar)
    config_out = cfg.to_dict() | {
        "models": [m.name for m in bench.models],
        "test_subjects": list(test_ids),
        "world_size": bench.world,
        "untrained": [m.name for m in bench.models if m.weights == "untrained"],
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    return BenchResult(
        bench.rows, bench.scores, bench.maps, config_out, describe_device(bench.device), bench.grid
    )


def _progress_bar(enabled: bool) -> Any:
    if not enabled:
        return None
    from mrsisr.progress import progress_bar

    return progress_bar("NFE")


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
