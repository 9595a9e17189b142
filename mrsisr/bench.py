"""Side-by-side benchmark of pipelines on the same maps: the paper's Table 1 protocol.

[`run_bench`][mrsisr.bench.run_bench] super-resolves the same test maps with every model at every
upscaling factor and reports, per model and scale, the number of network evaluations (NFE), the
measured seconds per slice (one 64×64 map; batched sampling, timed after a warm-up), the number of
parameters (counted as in Table 1) and NRMSE / PSNR / SSIM as mean ± standard deviation over the
maps, with paired two-sided Wilcoxon p-values against the first model. The zero-filled
low-resolution input is added as a reference row (`lr_input`).

Evaluation follows SPEC §2: each map is normalised by its own maximum, the low-resolution input is
the central `64/scale` block of its k-space, and the metrics are computed over the whole image in
original units after the prediction was masked and clamped to [0, 1].

Under `torchrun --nproc_per_node=N` the maps are sharded over the ranks and the scores gathered on
rank 0, which alone prints and writes.

Examples:
    >>> from mrsisr.bench import select_maps
    >>> select_maps(10, limit=4, seed=0)
    [2, 4, 6, 7]
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mrsisr.errors import CheckpointError, DataError, MrsisrError

__all__ = [
    "BENCH_SCALES",
    "DEFAULT_LIMIT",
    "DEFAULT_SLOW_LIMIT",
    "BenchResult",
    "BenchRow",
    "run_bench",
    "save_grid",
    "select_maps",
    "write_csv_rows",
]

BENCH_SCALES: tuple[int, ...] = (8, 4, 2)
"""The paper's upscaling factors (low-resolution matrices 8×8, 16×16 and 32×32)."""

DEFAULT_LIMIT = 10
"""Default maps per scale, so that `ftddm,tdpm,ddpm` at `small` size fit in 10 minutes on 2 CPU cores.

The 101-NFE models take about 4 s per map on 2 CPU cores at `small` size; 10 maps allow a paired
Wilcoxon p down to 0.002. DDPM's 1000 network evaluations (about 40 s per map) run on
`DEFAULT_SLOW_LIMIT` of the same maps.
"""

DEFAULT_SLOW_LIMIT = 2
"""Default maps per scale of 1000-NFE models in `mrsisr bench`."""

SLOW_NFE = 500
"""Models with at least this many network evaluations per map run on `slow_limit` maps."""

METRICS = ("nrmse", "psnr", "ssim")
"""The paper's metrics, in Table 1's order."""

LR_INPUT = "lr_input"
"""Name of the reference row: the zero-filled low-resolution input itself."""


@dataclass
class BenchRow:
    """One model at one upscaling factor.

    Attributes:
        model: Model name (a recipe name, a label given in Python, or `lr_input`).
        scale: Upscaling factor (8, 4 or 2).
        nfe: Network evaluations per map.
        sec_per_slice: Measured sampling time per 64×64 map, in seconds.
        params: Parameters counted as in Table 1.
        n_maps: Maps scored.
        nrmse_mean: Mean NRMSE (lower is better).
        nrmse_std: Standard deviation of the NRMSE.
        psnr_mean: Mean PSNR in dB.
        psnr_std: Standard deviation of the PSNR.
        ssim_mean: Mean SSIM.
        ssim_std: Standard deviation of the SSIM.
        p_nrmse: Paired Wilcoxon p-value of the NRMSE against the first model (`None` for it).
        p_psnr: Same for the PSNR.
        p_ssim: Same for the SSIM.
        p_psnr_lr: Paired Wilcoxon p-value of the PSNR against the zero-filled LR input on the
            same maps (`None` for the LR row itself).
        p_ssim_lr: Same for the SSIM.
        weights: Where the weights came from (`shipped`, a path, `untrained` or `-`).
        lpips_alex_mean: Mean LPIPS (AlexNet) when requested (lower is closer).
        lpips_alex_std: Its standard deviation.
        p_lpips_alex: Its paired Wilcoxon p-value against the first model.
        lpips_vgg_mean: Mean LPIPS (VGG16) when requested.
        lpips_vgg_std: Its standard deviation.
        p_lpips_vgg: Its paired Wilcoxon p-value against the first model.
    """

    model: str
    scale: int
    nfe: int
    sec_per_slice: float
    params: int
    n_maps: int
    nrmse_mean: float
    nrmse_std: float
    psnr_mean: float
    psnr_std: float
    ssim_mean: float
    ssim_std: float
    p_nrmse: float | None = None
    p_psnr: float | None = None
    p_ssim: float | None = None
    p_psnr_lr: float | None = None
    p_ssim_lr: float | None = None
    weights: str = "-"
    lpips_alex_mean: float | None = None
    lpips_alex_std: float | None = None
    p_lpips_alex: float | None = None
    lpips_vgg_mean: float | None = None
    lpips_vgg_std: float | None = None
    p_lpips_vgg: float | None = None


@dataclass
class BenchResult:
    """Everything a bench measured.

    Attributes:
        rows: One [`BenchRow`][mrsisr.bench.BenchRow] per model and scale.
        scores: `(model, scale) -> {metric: (N,) array}`: the per-map scores, same maps in the
            same order for every model.
        maps: The scored maps as `(subject, metabolite, slice)`.
        config: The bench's settings.
        machine: Where it ran, e.g. `cpu (x86_64, 2 threads)`.
        grid: Images for the qualitative figure, per scale: `lr`, `gt`, `mask`, one prediction per
            model and the first model's `std` (see [`save_grid`][mrsisr.bench.save_grid]).
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
            (tmp / "results.json").write_text(
                json.dumps(self.to_dict(), indent=2, default=_json_default) + "\n"
            )
            write_csv_rows(tmp / "results.csv", [asdict(r) for r in self.rows])
            if self.grid:
                save_grid(self, tmp / "grid.png")
        return [out / n for n in names]


BENCH_MARKER = "results.json"
"""The file that marks a folder as a `mrsisr bench` output (it may then be replaced)."""


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    raise TypeError(f"not JSON-able: {type(obj).__name__}")


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_csv_rows(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write dict rows as CSV (header from the first row) under a temporary name, then rename.

    Args:
        path: Output file.
        rows: The rows; every row has the first row's keys.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def select_maps(n: int, limit: int | None, seed: int = 0) -> list[int]:
    """Choose which of `n` test maps to score: a seeded random subset, in index order.

    Args:
        n: Number of available maps.
        limit: Maps to keep (`None` or `>= n`: all).
        seed: Seed of the choice.

    Returns:
        Sorted indices.
    """
    if limit is None or limit >= n:
        return list(range(n))
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.permutation(n)[:limit])


def _dist_info() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _gather(obj: Any) -> list[Any]:
    import torch.distributed as dist

    rank, world = _dist_info()
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _warm_up(pipe: Any, cond: Any, generator: torch.Generator) -> None:
    """Run each network once so that timings exclude one-time costs (allocation, kernels)."""
    denoiser, initializer = getattr(pipe, "denoiser", None), getattr(pipe, "initializer", None)
    with torch.no_grad():
        if denoiser is not None and initializer is not None and int(pipe.t_start) > 0:
            t = torch.full((cond.batch_size,), int(pipe.t_start), device=cond.lr.device)
            x = initializer.sample(cond, pipe.t_start, pipe.schedule, generator=generator)
            denoiser(x, t, cond)
        else:
            pipe.sample(cond, generator=generator)


class _Model:
    """A pipeline under test with its name, counts and weight source."""

    def __init__(self, name: str, pipe: Any, weights: str) -> None:
        from mrsisr.pipeline import count_parameters

        self.name, self.pipe, self.weights = name, pipe, weights
        self.nfe = int(pipe.nfe)
        self.params = int(count_parameters(pipe)["total"])


VARIANTS: dict[str, dict[str, Any]] = {"dc": {"consistency": {"type": "kspace"}}}
"""Model-name suffixes of the bench: `ftddm+dc` is FTDDM with k-space data consistency."""


def split_variant(name: str) -> tuple[str, dict[str, Any]]:
    """Split a bench model name into its recipe and the overrides of its `+suffix`.

    Args:
        name: E.g. `ftddm` or `ftddm+dc`.

    Returns:
        `(recipe, overrides)`.

    Raises:
        MrsisrError: For an unknown suffix.

    Examples:
        >>> split_variant("tdpm+dc")
        ('tdpm', {'consistency': {'type': 'kspace'}})
    """
    base, plus, suffix = name.partition("+")
    if not plus:
        return name, {}
    if suffix not in VARIANTS:
        raise MrsisrError(
            f"--models {name}: unknown suffix '+{suffix}'; known: "
            + ", ".join(f"+{k}" for k in VARIANTS)
        )
    return base, dict(VARIANTS[suffix])


def _merged(overrides: Mapping[str, Any] | None, extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(overrides or {})
    out.update(extra)
    return out


def _load_models(
    models: Sequence[str | tuple[str, Any]],
    size: str,
    weights: Mapping[str, str] | None,
    untrained: bool,
    overrides: Mapping[str, Any] | None,
    device: torch.device,
) -> list[_Model]:
    from mrsisr.recipes import load_recipe
    from mrsisr.zoo import load, weights_path

    weights = dict(weights or {})
    names = [m if isinstance(m, str) else m[0] for m in models]
    if len(set(names)) != len(names) or LR_INPUT in names:
        raise MrsisrError(f"--models: names must be unique and not '{LR_INPUT}', got {names}")
    unknown = (
        set(weights) - set(names) - {split_variant(m)[0] for m in models if isinstance(m, str)}
    )
    if unknown:
        raise MrsisrError(f"--weights names models not benched: {', '.join(sorted(unknown))}")
    missing = []
    for m in models:  # every problem before any work
        if isinstance(m, str):
            base, extra = split_variant(m)
            recipe = load_recipe(base, size=size, overrides=_merged(overrides, extra))
            has = m in weights or base in weights
            if not untrained and not has and not weights_path(recipe.name, size).is_file():
                missing.append(recipe.name)
    if missing:
        raise CheckpointError(
            f"no shipped '{size}' weights for {', '.join(missing)}; train them "
            f"(`mrsisr train NAME --size {size} --out RUN`) and pass --weights NAME=RUN, choose "
            "models listed with weights by `mrsisr list recipes`, or pass --untrained to time "
            "random weights"
        )
    out = []
    for m in models:
        if not isinstance(m, str):
            label, pipe = m
            out.append(_Model(label, pipe.to(device).eval(), "given"))
            continue
        base, extra = split_variant(m)
        over = _merged(overrides, extra)
        source = weights.get(m, weights.get(base))
        if untrained and source is None:
            pipe = load_recipe(base, size=size, overrides=over).build()
            out.append(_Model(m, pipe.to(device).eval(), "untrained"))
        else:
            pipe = load(base, size=size, weights=source, overrides=over, device=device)
            out.append(_Model(m, pipe, str(source or "shipped")))
    return out


def run_bench(
    models: Sequence[str | tuple[str, Any]],
    *,
    scales: Sequence[int] = BENCH_SCALES,
    data: str | os.PathLike[str] = "phantom",
    fold: int = 0,
    limit: int | None = DEFAULT_LIMIT,
    slow_limit: int | None = None,
    size: str = "small",
    seed: int = 0,
    device: str | torch.device = "cpu",
    batch: int | None = None,
    weights: Mapping[str, str] | None = None,
    untrained: bool = False,
    overrides: Mapping[str, Any] | None = None,
    uq_samples: int = 4,
    baseline: bool = True,
    lpips: Sequence[str] = (),
    progress: bool = True,
    on_row: Callable[[BenchRow], None] | None = None,
    channels_last: bool = False,
) -> BenchResult:
    """Benchmark models side by side on the same test maps.

    Args:
        models: Recipe names (with shipped or given weights), or `(label, pipeline)` pairs for
            pipelines built in Python; the first is the reference of the Wilcoxon tests.
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
        on_row: Called with each row as soon as it is measured.
        channels_last: Store the networks' 4-D weights in channels-last memory format (the
            same results; 7-37% less time per network evaluation in `benchmarks/perf.py`'s
            measurements on a 2-core CPU, see the docs).

    Returns:
        The [`BenchResult`][mrsisr.bench.BenchResult] (complete on rank 0 under torchrun).

    Raises:
        CheckpointError: If a model has no weights (before any sampling).
        DataError: If the data or a scale is unusable.
    """
    from mrsisr.data import MRSIDataset, collate, fold_split, load_dataset
    from mrsisr.metrics import batch_metrics, wilcoxon
    from mrsisr.train.engine import describe_device
    from mrsisr.train.run import resolve_data

    if not models:
        raise MrsisrError("--models: give at least one model")
    scales = [int(s) for s in scales]
    for s in scales:
        if s <= 0 or 64 % s or (64 // s) % 2 or not 8 <= 64 // s <= 64:
            raise DataError(f"--scales: {s} is not usable; choose factors such as 8, 4, 2")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MrsisrError("--device cuda: no CUDA device is available here; use --device cpu")
    if batch is not None and batch < 1:
        raise MrsisrError(f"--batch must be at least 1, got {batch}")
    rank, world = _dist_info()
    loaded = _load_models(models, size, weights, untrained, overrides, device)
    if channels_last:
        for m in loaded:
            if isinstance(m.pipe, torch.nn.Module):
                m.pipe.to(memory_format=torch.channels_last)
    subjects = load_dataset(resolve_data(data))
    _, _, test_ids = fold_split([s.subject for s in subjects], fold)
    if not test_ids:
        raise DataError(f"fold {fold} has no test subjects; use more subjects or another fold")

    bar = _progress_bar(progress and rank == 0)
    rows: list[BenchRow] = []
    scores: dict[tuple[str, int], dict[str, np.ndarray]] = {}
    grid: dict[int, dict[str, Any]] = {}
    maps: list[tuple[str, str, int]] = []
    first = loaded[0].name
    with bar if bar is not None else nullcontext():
        for scale in scales:
            lr_size = int(round(64 / scale))
            dataset = MRSIDataset(subjects, lr_size=lr_size, subject_ids=test_ids)
            chosen = select_maps(len(dataset), limit, seed)
            if not chosen:
                raise DataError("no test maps with a non-empty mask in this fold")
            mine = chosen[rank::world]
            items = [dataset[i] for i in mine]
            if not maps:
                maps = [_identity(dataset, i) for i in chosen]
            full = collate(items).to(device) if items else None
            gt = full.x0 * full.max_value.view(-1, 1, 1, 1) if full is not None else None
            # the figure's map must be one every model scores (a slow model: the first maps)
            n_common = len(mine)
            if slow_limit is not None and any(m.nfe >= SLOW_NFE for m in loaded):
                n_slow = min(len(chosen), int(slow_limit))
                n_common = min(n_common, len(range(rank, n_slow, world)))
            fig_idx = _figure_index(full[: max(n_common, 1)]) if full is not None else 0
            step = batch or max(1, len(items))
            lr_img = full.cond.lr.clamp(0, 1) * full.cond.mask if full is not None else None
            lr_scores = _merge(
                [g for g in _gather(_score(batch_metrics, lr_img, gt, full, lpips))], chosen, world
            )
            for model in loaded:
                n_sel = len(chosen)
                if slow_limit is not None and model.nfe >= SLOW_NFE:
                    n_sel = min(len(chosen), int(slow_limit))
                mine_n = len(range(rank, n_sel, world))  # this rank's share of chosen[:n_sel]
                preds, seconds = [], 0.0
                task = (
                    bar.add_task(
                        f"{model.name} ×{scale:g}",
                        total=model.nfe * math.ceil(mine_n / step) if mine_n else 1,
                    )
                    if bar is not None
                    else None
                )
                hook = _advance_hook(model.pipe, bar, task)
                try:
                    gen = torch.Generator(device=device).manual_seed(seed * 1009 + lr_size)
                    if full is not None and mine_n:
                        _warm_up(model.pipe, full.cond[:2], gen)
                        for start in range(0, mine_n, step):
                            cond = full.cond[start : min(start + step, mine_n)]
                            _sync(device)
                            t0 = time.perf_counter()
                            preds.append(model.pipe.sample(cond, generator=gen))
                            _sync(device)
                            seconds += time.perf_counter() - t0
                finally:
                    if hook is not None:
                        hook.remove()
                if bar is not None:
                    bar.update(task, completed=bar.tasks[task].total)
                pred = torch.cat(preds) if preds else None
                part = full[:mine_n] if full is not None and mine_n else None
                local = _score(
                    batch_metrics,
                    pred,
                    part.x0 * part.max_value.view(-1, 1, 1, 1) if part else None,
                    part,
                    lpips,
                )
                gathered = _gather((local, seconds))
                merged = _merge([g[0] for g in gathered], chosen[:n_sel], world)
                seconds = max(g[1] for g in gathered)
                scores[(model.name, scale)] = merged
                if full is not None and rank == 0 and fig_idx < mine_n:
                    fig = grid.setdefault(scale, _grid_base(full, fig_idx, scale))
                    fig[model.name] = (pred[fig_idx, 0] * full.max_value[fig_idx]).cpu().numpy()
                    if model.name == first and uq_samples > 1:
                        fig["std"] = _uncertainty(model.pipe, full, fig_idx, uq_samples, gen)
                        fig["std_model"] = model.name
                row = _row(
                    model.name,
                    scale,
                    model.nfe,
                    seconds / max(n_sel, 1),
                    model.params,
                    merged,
                    scores.get((first, scale)),
                    model.weights,
                    wilcoxon,
                )
                lr_row = _row("", scale, 0, 0.0, 0, lr_scores, merged, "-", wilcoxon)
                row.p_psnr_lr, row.p_ssim_lr = lr_row.p_psnr, lr_row.p_ssim
                rows.append(row)
                if on_row is not None and rank == 0:
                    on_row(rows[-1])
            if baseline:
                merged = lr_scores
                scores[(LR_INPUT, scale)] = merged
                rows.append(
                    _row(LR_INPUT, scale, 0, 0.0, 0, merged, scores[(first, scale)], "-", wilcoxon)
                )
                if on_row is not None and rank == 0:
                    on_row(rows[-1])

    config = {
        "models": [m.name for m in loaded],
        "scales": scales,
        "data": str(data),
        "fold": fold,
        "test_subjects": list(test_ids),
        "limit": limit,
        "size": size,
        "seed": seed,
        "device": str(device),
        "batch": batch,
        "channels_last": channels_last,
        "world_size": world,
        "untrained": [m.name for m in loaded if m.weights == "untrained"],
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    return BenchResult(rows, scores, maps, config, describe_device(device), grid)


def _progress_bar(enabled: bool) -> Any:
    if not enabled:
        return None
    from mrsisr.progress import progress_bar

    return progress_bar("NFE")


def _advance_hook(pipe: Any, bar: Any, task: Any) -> Any:
    denoiser = getattr(pipe, "denoiser", None)
    if bar is None or not isinstance(denoiser, torch.nn.Module):
        return None
    return denoiser.register_forward_hook(lambda *_: bar.advance(task, 1))


def _identity(dataset: Any, i: int) -> tuple[str, str, int]:
    si, met, k = dataset.items[i]
    return dataset.subjects[si].subject, met, int(k)


def _figure_index(batch: Any) -> int:
    """The map with the largest mask: the most informative one for the figure."""
    return int(batch.cond.mask.flatten(1).sum(1).argmax())


def _grid_base(batch: Any, i: int, scale: int) -> dict[str, Any]:
    m = float(batch.max_value[i])
    return {
        "lr": (batch.cond.lr[i, 0].clamp(0, 1) * batch.cond.mask[i, 0] * m).cpu().numpy(),
        "gt": (batch.x0[i, 0] * m).cpu().numpy(),
        "mask": batch.cond.mask[i, 0].cpu().numpy(),
        "title": f"{batch.subject[i]} {batch.metabolite[i]} slice {batch.slice_index[i]}",
        "scale": scale,
    }


def _uncertainty(pipe: Any, batch: Any, i: int, n: int, gen: torch.Generator) -> np.ndarray:
    cond = batch.cond[i : i + 1].repeat(n)
    x = pipe.sample(cond, generator=gen) * batch.max_value[i]
    return x[:, 0].std(0).cpu().numpy()


def _score(
    metrics_fn: Any, pred: Any, gt: Any, batch: Any, lpips: Sequence[str] = ()
) -> dict[str, np.ndarray]:
    keys = list(METRICS) + [f"lpips_{n}" for n in lpips]
    if pred is None:
        return {k: np.zeros(0) for k in keys}
    pred = pred * batch.cond.mask * batch.max_value.view(-1, 1, 1, 1)
    out = {k: v.cpu().numpy() for k, v in metrics_fn(pred, gt).items()}
    if lpips:
        from mrsisr.perceptual import batch_lpips

        for net in lpips:
            out[f"lpips_{net}"] = batch_lpips(pred, gt, net).cpu().numpy()
    return out


def _merge(
    parts: list[dict[str, np.ndarray]], chosen: list[int], world: int
) -> dict[str, np.ndarray]:
    """Undo the `chosen[rank::world]` sharding: back to the order of `chosen`."""
    out = {}
    for k in parts[0]:
        full = np.empty(len(chosen))
        for rank, part in enumerate(parts):
            full[rank::world] = part[k]
        out[k] = full
    return out


def _row(
    name: str,
    scale: int,
    nfe: int,
    sec: float,
    params: int,
    s: dict[str, np.ndarray],
    ref: dict[str, np.ndarray] | None,
    weights: str,
    wilcoxon: Any,
) -> BenchRow:
    finite = np.all([np.isfinite(s[k]) for k in s], axis=0)
    stats = {}
    for k in s:
        v = s[k][finite]
        stats[f"{k}_mean"] = float(v.mean()) if v.size else math.nan
        stats[f"{k}_std"] = float(v.std()) if v.size else math.nan
        if ref is not None and ref is not s:
            n = min(len(s[k]), len(ref[k]))  # a slow model scores the first n of the same maps
            a, b = s[k][:n], ref[k][:n]
            both = finite[:n] & np.isfinite(b)
            stats[f"p_{k}"] = float(wilcoxon(a[both], b[both])) if both.any() else None
    return BenchRow(
        model=name,
        scale=scale,
        nfe=nfe,
        sec_per_slice=float(sec),
        params=params,
        n_maps=int(finite.sum()),
        weights=weights,
        **stats,
    )


def save_grid(result: BenchResult, png: str | os.PathLike[str]) -> Path:
    """Draw the qualitative figure: one row per scale; LR, each model, ground truth, errors, std.

    Columns: the low-resolution input, every model's prediction and the ground truth on one colour
    scale; then each model's absolute error on a second; then the first model's per-pixel standard
    deviation over its samples (its uncertainty), when it was drawn.

    Args:
        result: A bench result with its `grid`.
        png: Output file.

    Returns:
        The written file.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    png = Path(png)
    models = [m for m in result.config["models"] if all(m in result.grid[s] for s in result.grid)]
    scales = sorted(result.grid, reverse=True)
    has_std = any("std" in result.grid[s] for s in scales)
    cols = 1 + len(models) + 1 + len(models) + int(has_std)
    fig, axes = plt.subplots(
        len(scales), cols, figsize=(1.7 * cols, 1.9 * len(scales) + 0.3), squeeze=False
    )
    for r, s in enumerate(scales):
        g = result.grid[s]
        vmax = float(g["gt"].max()) or 1.0
        images = [("LR input", g["lr"])] + [(m, g[m]) for m in models] + [("ground truth", g["gt"])]
        errors = [(f"|error| {m}", np.abs(g[m] - g["gt"]) * g["mask"]) for m in models]
        emax = max(float(e.max()) for _, e in errors) or 1.0
        for c, (title, img) in enumerate(images):
            shown = axes[r, c].imshow(img, cmap="viridis", vmin=0, vmax=vmax)
            axes[r, c].set_title(title, fontsize=7)
        bar = fig.colorbar(shown, ax=axes[r, len(images) - 1], fraction=0.046, pad=0.03)
        bar.set_label("map (input units)", fontsize=6)
        bar.ax.tick_params(labelsize=5)
        for c, (title, img) in enumerate(errors, start=len(images)):
            err = axes[r, c].imshow(img, cmap="magma", vmin=0, vmax=emax)
            axes[r, c].set_title(title, fontsize=7)
        if has_std:
            std = g.get("std")
            ax = axes[r, cols - 1]
            if std is not None:
                ax.imshow(std * g["mask"], cmap="magma", vmin=0, vmax=emax)
                ax.set_title(f"std {g['std_model']}", fontsize=7)
        bar = fig.colorbar(err, ax=axes[r, cols - 1], fraction=0.046, pad=0.03)
        bar.set_label("|error|, std", fontsize=6)
        bar.ax.tick_params(labelsize=5)
        axes[r, 0].set_ylabel(f"×{s}\n{g['title']}", fontsize=7)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(
        f"mrsisr bench, {result.config['size']} size, {result.config['data']} fold "
        f"{result.config['fold']} (errors and std share one colour scale per row)",
        fontsize=8,
    )
    fig.tight_layout()
    tmp = png.with_name(f".{png.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, png)
    return png
