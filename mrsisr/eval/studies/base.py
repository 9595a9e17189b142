"""What every study shares: its settings, its result, and scoring labelled variants.

A study is data: a list of variants, each a dict of settings (its `variant` label first) with the
pipeline it describes, plus a plot spec. [`run_variants`][mrsisr.eval.studies.base.run_variants]
scores them on the same test maps with [`run_bench`][mrsisr.eval.bench.run_bench] and returns the
[`StudyResult`][mrsisr.eval.studies.base.StudyResult]; the rows are the variants' settings plus
every bench field.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mrsisr.errors import CheckpointError, MrsisrError
from mrsisr.eval.report import write_csv_rows, write_json

__all__ = [
    "STUDY_MARKER",
    "ConditionedScale",
    "StudyConfig",
    "StudyResult",
    "check_weights",
    "partial_path",
    "per_map_scores",
    "run_variants",
    "study_cache",
    "study_config",
    "study_overrides",
    "study_pipeline",
]

Variant = tuple[dict[str, Any], Any]
"""A study variant: its settings (`{"variant": label, ...}`) and its pipeline."""


@dataclass
class StudyConfig:
    """Settings shared by every study.

    Attributes:
        size: Size variant of the recipes (their shipped weights are used).
        data: `"phantom"` or a dataset folder.
        fold: Fold whose test subjects are scored.
        limit: Maps per scale.
        scales: Actual upscaling factors.
        seed: Seed of the map choice and the sampling noise.
        device: `cpu` or `cuda`.
        weights: Recipe name → weights file or run folder, instead of the shipped weights.
        untrained: Use random weights (drawn from `seed`) for recipes without weights (for tests
            and timings).
        steps: Step counts of the truncation study (the solver study uses its own).
        progress: Show progress bars.
        consistency: `"kspace"` adds k-space data consistency to every pipeline of the study
            (see [`mrsisr.consistency`][mrsisr.consistency]); `"none"` runs them as published.
        slow_limit: Maps per scale for 1000-NFE models (DDPM-1000, `diffusion_only`): the first
            of the same seeded maps, so their p-values pair on those.
        skip_slow: Leave out the 1000-NFE rows (a quick mode): the truncation study's DDPM-1000
            reference, the ablation's `diffusion_only`, DDPM in the consistency study.
        models: Recipes to compare, for studies that take a list (`None`: the study's own).
        batch: Maps per sampling call (`None`: all maps of a scale at once; a 1000-NFE row
            whose `slow_limit` maps of every scale fit in one call samples them together, as in
            [`BenchConfig`][mrsisr.eval.bench.BenchConfig]). On a CPU 16 is
            faster than one large call (the activations stay in cache); the draws differ with
            the batch, so it is part of a study's identity.
        channels_last: Store the networks' weights channels-last (faster on a CPU, the same
            results up to float round-off).
        resume_dir: Folder that keeps each row's per-map scores as they are measured
            (`.NAME.partial.json`, a [`ScoreCache`][mrsisr.eval.cache.ScoreCache]); a run with
            the same settings reads back the rows of models whose weights are unchanged
            instead of sampling them again (after an interruption, or after one model was
            retrained). `mrsisr study` sets it to `--out`. `None`: nothing is kept.
    """

    size: str = "small"
    data: str = "phantom"
    fold: int = 0
    limit: int | None = 4
    scales: Sequence[int] = (8, 4, 2)
    seed: int = 0
    device: str = "cpu"
    weights: Mapping[str, str] = field(default_factory=dict)
    untrained: bool = False
    steps: Sequence[int] = (100, 50, 20)
    progress: bool = True
    consistency: str = "none"
    slow_limit: int = 20
    skip_slow: bool = False
    models: Sequence[str] | None = None
    batch: int | None = None
    channels_last: bool = False
    resume_dir: str | None = None


STUDY_MARKER = ".mrsisr-study"
"""The file that marks a folder as holding `mrsisr study` results."""


@dataclass
class StudyResult:
    """A study's table and figure data.

    Attributes:
        name: Study name.
        rows: One dict per variant and scale: the variant's settings plus every
            [`BenchRow`][mrsisr.eval.report.BenchRow] field.
        config: The settings it ran with.
        machine: Where it ran.
        plot: Draws the figure: `plot(result, png_path)`.
        scores: Per-map scores, `"VARIANT@SCALE" -> {"maps": [[subject, metabolite, slice],
            ...], metric: [value per map]}` (see
            [`per_map_scores`][mrsisr.eval.studies.base.per_map_scores]), so any two rows can
            be compared on the maps they share (`benchmarks/findings.py`).
    """

    name: str
    rows: list[dict[str, Any]]
    config: dict[str, Any]
    machine: str
    plot: Callable[[StudyResult, Path], None] | None = field(default=None, repr=False)
    scores: dict[str, dict[str, list[Any]]] = field(default_factory=dict, repr=False)

    def save(self, out: str | os.PathLike[str]) -> list[Path]:
        """Write `<name>.json`, `<name>.csv` and `<name>.png` into `out`.

        Args:
            out: Output folder (created if needed). It must be new, empty, or hold earlier study
                results (its `.mrsisr-study` marker); only this study's files are replaced.

        Returns:
            The written files.

        Raises:
            MrsisrError: If `out` is not a folder a study may write into.
        """
        from mrsisr.outputs import prepare_out

        out = prepare_out(out, marker=STUDY_MARKER, command="mrsisr study")
        out.mkdir(parents=True, exist_ok=True)
        (out / STUDY_MARKER).write_text("results of mrsisr study; this folder may be rewritten\n")
        written = []
        path = out / f"{self.name}.json"
        data = {
            "study": self.name,
            "rows": self.rows,
            "config": self.config,
            "machine": self.machine,
            **({"scores": self.scores} if self.scores else {}),
        }
        written.append(write_json(path, data))
        written.append(write_csv_rows(out / f"{self.name}.csv", self.rows))
        if self.plot is not None:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            path = out / f"{self.name}.png"
            tmp = path.with_name(f".{self.name}.tmp.png")
            self.plot(self, tmp)
            plt.close("all")
            os.replace(tmp, path)
            written.append(path)
        return written


class ConditionedScale(torch.nn.Module):
    """Wrap a pipeline so that it is told another upscaling factor than the actual one (Fig. 6).

    Args:
        pipeline: A pipeline whose networks take the scale embedding (e.g. FTDDM).
        scale: The factor `s` given to the networks, whatever the input's actual factor.
    """

    def __init__(self, pipeline: Any, scale: float) -> None:
        super().__init__()
        self.pipeline = pipeline
        self.scale = float(scale)
        self.recipe = getattr(pipeline, "recipe", None)

    @property
    def nfe(self) -> int:
        """The wrapped pipeline's network evaluations per sample."""
        return int(self.pipeline.nfe)

    def parts(self) -> dict[str, tuple[torch.nn.Module, bool]]:
        """The wrapped pipeline's parts (for parameter counts).

        Returns:
            Part name → (module, counted).
        """
        from mrsisr.pipelines import pipeline_parts

        return pipeline_parts(self.pipeline)

    def training_stages(self) -> list[Any]:
        """Nothing to train: the wrapped pipeline is trained as it is.

        Returns:
            An empty list.
        """
        return []

    @torch.no_grad()
    def sample(
        self,
        cond: Any,
        generator: torch.Generator | None = None,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> torch.Tensor:
        """Sample with `cond.scale` replaced by the fixed factor.

        Args:
            cond: Conditions of the batch.
            generator: Optional random generator.
            progress: Passed on to the wrapped pipeline.

        Returns:
            `x0` estimates `(B, 1, H, W)`.
        """
        told = replace(cond, scale=torch.full_like(cond.scale, self.scale))
        return self.pipeline.sample(told, generator=generator, progress=progress)


def study_overrides(cfg: StudyConfig, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """A variant's recipe overrides plus what the study's settings add (k-space consistency).

    Args:
        cfg: Study settings.
        overrides: The variant's own overrides.

    Returns:
        The overrides to build the variant with.

    Raises:
        MrsisrError: For an unknown `cfg.consistency`.
    """
    if cfg.consistency not in ("none", "kspace"):
        raise MrsisrError(f"`consistency` must be none or kspace, got {cfg.consistency!r}")
    out = dict(overrides or {})
    if cfg.consistency == "kspace":
        out["consistency"] = {"type": "kspace"}
    return out


def study_pipeline(cfg: StudyConfig, name: str, overrides: Mapping[str, Any] | None = None) -> Any:
    """A recipe with its weights (or random weights when allowed and none exist).

    Args:
        cfg: Study settings (size, weights, device, consistency).
        name: Recipe name.
        overrides: Recipe overrides that keep the networks' shapes.

    Returns:
        The pipeline, in eval mode on `cfg.device`.

    Raises:
        MrsisrError: For an unknown `cfg.consistency`.
    """
    from mrsisr.recipes import load_recipe
    from mrsisr.weights import weights_path
    from mrsisr.zoo import load

    overrides = study_overrides(cfg, overrides)
    recipe = load_recipe(name, size=cfg.size, overrides=overrides)
    given = cfg.weights.get(name)
    if given is None and cfg.untrained and not weights_path(recipe.name, cfg.size).is_file():
        with torch.random.fork_rng(devices=[]):  # random weights, the same in every run
            torch.manual_seed(cfg.seed)
            return recipe.build().to(cfg.device).eval()
    return load(name, size=cfg.size, weights=given, overrides=overrides, device=cfg.device)


def check_weights(cfg: StudyConfig, names: Sequence[str]) -> None:
    """Fail before any work when a recipe the study needs has no weights.

    Args:
        cfg: Study settings.
        names: Recipes the study loads.

    Raises:
        CheckpointError: Naming every recipe without weights and how to train it.
    """
    from mrsisr.weights import weights_path

    if cfg.untrained:
        return
    missing = [n for n in names if n not in cfg.weights and not weights_path(n, cfg.size).is_file()]
    if missing:
        raise CheckpointError(
            f"this study needs '{cfg.size}' weights for {', '.join(missing)}; train them "
            f"(`mrsisr train NAME --size {cfg.size} --out RUN`) and pass --weights NAME=RUN"
        )


def partial_path(out: str | os.PathLike[str], name: str) -> Path:
    """Where a study keeps its per-map scores: `OUT/.NAME.partial.json`.

    The file stays after the results are written, so running the study again with the same
    `--out` samples only rows that are missing or whose model's weights changed.

    Args:
        out: The study's output folder.
        name: The study's name.

    Returns:
        The path.
    """
    return Path(out) / f".{name}.partial.json"


def study_cache(cfg: StudyConfig, name: str, **extra: Any) -> Any:
    """The study's [`ScoreCache`][mrsisr.eval.cache.ScoreCache] in `cfg.resume_dir`, or `None`.

    Args:
        cfg: Study settings.
        name: The study's name.
        **extra: More settings all the scores depend on (e.g. the LPIPS backbones). Not the
            variants: each row is checked by its name and its model's
            [`fingerprint`][mrsisr.eval.cache.fingerprint].

    Returns:
        The cache, holding the rows an earlier run with the same settings scored.
    """
    from mrsisr.eval.cache import ScoreCache

    if cfg.resume_dir is None:
        return None
    # map_order: scores kept before the maps were scored in seeded order (not index order)
    # belong to other maps at the same positions, so those files are not read back
    import mrsisr

    identity = {
        "study": name,
        "map_order": "seeded",
        "mrsisr": mrsisr.__version__,  # scores from another version are not read back
        **study_config(cfg),
        **extra,
    }
    for key in ("progress", "models", "weights", "skip_slow"):  # rows carry these themselves
        identity.pop(key)
    cache = ScoreCache(partial_path(cfg.resume_dir, name), identity, marker=STUDY_MARKER)
    if len(cache) and cfg.progress:
        print(f"{name}: {len(cache)} row(s) read back from {cache.path}", file=sys.stderr)
    return cache


def study_config(cfg: StudyConfig, **extra: Any) -> dict[str, Any]:
    """The settings a study ran with, as JSON-able data.

    Args:
        cfg: Study settings.
        **extra: Study-specific additions.

    Returns:
        Field → value.
    """
    out = asdict(cfg)
    out["weights"] = dict(cfg.weights)
    out["scales"] = list(cfg.scales)
    out["steps"] = list(cfg.steps)
    out["models"] = list(cfg.models) if cfg.models else None
    out.pop("resume_dir")
    out.update(extra)
    return out


def per_map_scores(result: Any, rename: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A bench result's per-map scores, each list with the maps it belongs to.

    Args:
        result: A [`BenchResult`][mrsisr.eval.bench.BenchResult].
        rename: Model name → the name the study gives its rows (default: unchanged).

    Returns:
        `"NAME@SCALE" -> {"maps": [[subject, metabolite, slice], ...], metric: [...]}`; a
        1000-NFE model scored on fewer maps has the first of them. Non-finite values are `None`.
    """
    rename = dict(rename or {})
    out: dict[str, Any] = {}
    for (model, scale), metrics in result.scores.items():
        n = max((len(v) for v in metrics.values()), default=0)
        entry: dict[str, Any] = {"maps": [list(m) for m in result.maps[:n]]}
        for k, v in metrics.items():
            entry[k] = [float(x) if np.isfinite(x) else None for x in np.asarray(v, dtype=float)]
        out[f"{rename.get(model, model)}@{scale}"] = entry
    return out


def run_variants(
    cfg: StudyConfig,
    name: str,
    variants: Sequence[Variant],
    plot: Callable[[StudyResult, Path], None] | None,
    *,
    lpips: Sequence[str] = (),
    limit: int | None = None,
    baseline: bool = True,
) -> StudyResult:
    """Score labelled variants on the same maps: the body of most studies.

    Args:
        cfg: Study settings.
        name: The study's name (its file names).
        variants: `(settings, pipeline)` pairs; every `settings` has the first one's keys.
        plot: The figure: `plot(result, png)` (e.g. a [`mrsisr.eval.figures`][mrsisr.eval.figures]
            function), or `None`.
        lpips: LPIPS backbones to score as well.
        limit: Maps per scale instead of `cfg.limit`.
        baseline: Add the zero-filled input's row.

    Returns:
        The [`StudyResult`][mrsisr.eval.studies.base.StudyResult].
    """
    from mrsisr.eval.bench import run_bench

    # the variants are not part of the identity: each row is checked by its name and the
    # fingerprint of its model, so adding or replacing one variant keeps the others' rows
    cache = study_cache(cfg, name, lpips=list(lpips), limit=limit)
    result = run_bench(
        [(v[0]["variant"], v[1]) for v in variants],
        scales=cfg.scales,
        data=cfg.data,
        fold=cfg.fold,
        limit=cfg.limit if limit is None else limit,
        slow_limit=cfg.slow_limit,
        seed=cfg.seed,
        device=cfg.device,
        uq_samples=0,
        baseline=baseline,
        lpips=lpips,
        progress=cfg.progress,
        cache=cache,
        batch=cfg.batch,
        channels_last=cfg.channels_last,
    )
    meta = {v[0]["variant"]: v[0] for v in variants}
    rows = []
    for r in result.rows:
        info = meta.get(r.model, {"variant": r.model})
        row = {**{k: info.get(k) for k in variants[0][0]}, **asdict(r)}
        row["variant"] = r.model
        rows.append(row)
    return StudyResult(
        name, rows, study_config(cfg), result.machine, plot, scores=per_map_scores(result)
    )
