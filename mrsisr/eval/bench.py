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
from mrsisr.eval.models import load_models, split_variant
from mrsisr.eval.report import BenchRow, write_csv_rows, write_json
from mrsisr.eval.runner import BenchRun
from mrsisr.eval.scores import select_maps
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

DEFAULT_LIMIT = 8
"""Default maps per scale of `mrsisr bench`: enough for a paired Wilcoxon p down to 0.008.

Chosen so that `mrsisr bench --models ftddm,tdpm,ddpm` ends within ten minutes on 2 CPU cores:
the 101-NFE models at `small` size took 3.7 s per map on the 2-core build machine on 2026-12-01
and 5.5-6.3 s on 2026-12-02 (the same machine type on a slower host: 57 against about 36 ms per
image and network evaluation), and with 10 maps the command took 10 min 13 s on the slower host.
DDPM's 1000 network evaluations (40-105 s per map) run on `DEFAULT_SLOW_LIMIT` of the same maps.
"""

DEFAULT_SLOW_LIMIT = 1
"""Default maps per scale of 1000-NFE models in `mrsisr bench` (a demonstration that they run and
what they cost; their statistics need `--slow-limit 20`, as in the docs' tables)."""

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
            on those maps. `None`: the same as `limit`. When those maps of every scale fit in
            one call (`slow_limit` × scales ≤ `batch`, one process), they are sampled together:
            a 1000-step chain on one map per call leaves most of a CPU idle. Their `s/slice`
            is then their share of the joint calls' time.
        size: Size variant of recipe names.
        seed: Seed of the map choice and of the sampling noise.
        device: `cpu` or `cuda`.
        batch: Maps per sampling call (`None`: all maps of a scale at once, or of every scale
            for a slow model sampled jointly, see `slow_limit`).
        weights: Model name → weights file or run folder, instead of the shipped weights.
        untrained: Allow recipes without weights (random weights: timings only).
        overrides: Recipe overrides applied to every recipe name (e.g. sampler settings).
        uq_samples: Samples of the first model on the figure's map, for its uncertainty (std)
            map: the scored draw and `uq_samples - 1` more, those of every scale drawn in the
            same calls after the scores; 0 or 1 skips it.
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
    bench = BenchRun(cfg, load_models(models, cfg), on_row)
    subjects = load_dataset(resolve_data(cfg.data))
    _, _, test_ids = fold_split([s.subject for s in subjects], cfg.fold)
    if not test_ids:
        raise DataError(f"fold {cfg.fold} has no test subjects; use more subjects or another fold")
    bench.subjects, bench.test_ids = subjects, list(test_ids)
    bar = _progress_bar(cfg.progress and bench.rank == 0)
    with bar if bar is not None else nullcontext():
        for scale in cfg.scales:
            bench.run_scale(int(scale), bar)
        bench.add_uncertainty(bar)
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
