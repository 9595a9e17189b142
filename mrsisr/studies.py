"""The paper's studies as reproducible tables and figures (`mrsisr study NAME`).

Each study is a function registered in [`STUDIES`][mrsisr.registries.STUDIES] (third-party packages
add theirs through the `mrsisr.studies` entry-point group). It builds labelled pipeline variants
from zoo recipes and their weights, scores them on the same test maps with
[`run_bench`][mrsisr.bench.run_bench], and returns a [`StudyResult`][mrsisr.studies.StudyResult]
whose rows extend the bench rows with the variant's settings, plus a figure.

| study | the paper's | variants |
|---|---|---|
| `truncation` | Fig. 5 | respace, DPM-Solver++ (DDPM weights), TDPM, FTDDM at 100, 50, 20 steps |
| `solver` | Table 4 | FTDDM's flow start with its ancestral chain, then with DPM-Solver++ at 50, 20 and 10 steps |
| `scale` | Fig. 6 | FTDDM conditioned on upscaling factors other than the actual one |
| `sharpness` | Fig. 7 | FTDDM's τd from 0 to 1, with PSNR, SSIM and LPIPS (AlexNet, VGG) |
| `ablation` | Tables 2, 3 | flow only, diffusion only, both; FTDDM's flow without mask, MRIs or guide loss |
| `consistency` | — | every model with and without k-space data consistency (`mrsisr.consistency_study`) |

Examples:
    >>> from mrsisr.registries import STUDIES
    >>> sorted(STUDIES.names())
    ['ablation', 'consistency', 'scale', 'sharpness', 'solver', 'truncation']
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from mrsisr.bench import write_csv_rows
from mrsisr.errors import MrsisrError
from mrsisr.registries import STUDIES

__all__ = [
    "ABLATIONS",
    "Ablation",
    "ConditionedScale",
    "ablation_study",
    "ablation_weights_path",
    "StudyConfig",
    "StudyResult",
    "scale_study",
    "sharpness_study",
    "solver_study",
    "truncation_study",
]


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
        untrained: Use random weights for recipes without weights (for tests and timings).
        steps: Step counts of the truncation study (the solver study uses its own).
        progress: Show progress bars.
        consistency: `"kspace"` adds k-space data consistency to every pipeline of the study
            (see [`mrsisr.consistency`][mrsisr.consistency]); `"none"` runs them as published.
        slow_limit: Maps per scale for 1000-NFE models where a study runs them on fewer maps.
        models: Recipes to compare, for studies that take a list (`None`: the study's own).
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
    models: Sequence[str] | None = None


STUDY_MARKER = ".mrsisr-study"
"""The file that marks a folder as holding `mrsisr study` results."""


@dataclass
class StudyResult:
    """A study's table and figure data.

    Attributes:
        name: Study name.
        rows: One dict per variant and scale: the variant's settings plus every
            [`BenchRow`][mrsisr.bench.BenchRow] field.
        config: The settings it ran with.
        machine: Where it ran.
        plot: Draws the figure: `plot(result, png_path)`.
    """

    name: str
    rows: list[dict[str, Any]]
    config: dict[str, Any]
    machine: str
    plot: Callable[[StudyResult, Path], None] | None = field(default=None, repr=False)

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
        }
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, path)
        written.append(path)
        path = out / f"{self.name}.csv"
        write_csv_rows(path, self.rows)
        written.append(path)
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

    @property
    def nfe(self) -> int:
        """The wrapped pipeline's network evaluations per sample."""
        return int(self.pipeline.nfe)

    @property
    def denoiser(self) -> Any:
        """The wrapped pipeline's denoiser (`None` if it has none)."""
        return getattr(self.pipeline, "denoiser", None)

    @property
    def initializer(self) -> Any:
        """The wrapped pipeline's initializer (`None` if it has none)."""
        return getattr(self.pipeline, "initializer", None)

    @property
    def schedule(self) -> Any:
        """The wrapped pipeline's noise schedule (`None` if it has none)."""
        return getattr(self.pipeline, "schedule", None)

    @property
    def t_start(self) -> Any:
        """The wrapped pipeline's starting timestep (`None` if it has none)."""
        return getattr(self.pipeline, "t_start", None)

    def parts(self) -> dict[str, tuple[torch.nn.Module, bool]]:
        """The wrapped pipeline's parts (for parameter counts).

        Returns:
            Part name → (module, counted).
        """
        from mrsisr.pipeline import pipeline_parts

        return pipeline_parts(self.pipeline)

    @torch.no_grad()
    def sample(self, cond: Any, generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample with `cond.scale` replaced by the fixed factor.

        Args:
            cond: Conditions of the batch.
            generator: Optional random generator.

        Returns:
            `x0` estimates `(B, 1, H, W)`.
        """
        return self.pipeline.sample(
            replace(cond, scale=torch.full_like(cond.scale, self.scale)), generator=generator
        )


def _pipeline(cfg: StudyConfig, name: str, overrides: Mapping[str, Any] | None = None) -> Any:
    """A recipe with its weights (or random weights when allowed and none exist)."""
    from mrsisr.recipes import load_recipe
    from mrsisr.zoo import load, weights_path

    if cfg.consistency not in ("none", "kspace"):
        raise MrsisrError(f"--consistency must be none or kspace, got {cfg.consistency!r}")
    if cfg.consistency == "kspace":
        overrides = {**(overrides or {}), "consistency": {"type": "kspace"}}
    recipe = load_recipe(name, size=cfg.size, overrides=overrides)
    given = cfg.weights.get(name)
    if given is None and cfg.untrained and not weights_path(recipe.name, cfg.size).is_file():
        return recipe.build().to(cfg.device).eval()
    return load(name, size=cfg.size, weights=given, overrides=overrides, device=cfg.device)


def _check_weights(cfg: StudyConfig, names: Sequence[str]) -> None:
    """Fail before any work when a recipe the study needs has no weights."""
    from mrsisr.errors import CheckpointError
    from mrsisr.zoo import weights_path

    if cfg.untrained:
        return
    missing = [n for n in names if n not in cfg.weights and not weights_path(n, cfg.size).is_file()]
    if missing:
        raise CheckpointError(
            f"this study needs '{cfg.size}' weights for {', '.join(missing)}; train them "
            f"(`mrsisr train NAME --size {cfg.size} --out RUN`) and pass --weights NAME=RUN"
        )


def _bench(
    cfg: StudyConfig,
    variants: list[tuple[dict[str, Any], Any]],
    scales: Sequence[int] | None = None,
    lpips: Sequence[str] = (),
) -> tuple[list[dict[str, Any]], str]:
    """Score labelled variants on the same maps; rows = variant settings + bench fields."""
    from mrsisr.bench import run_bench

    result = run_bench(
        [(v[0]["variant"], v[1]) for v in variants],
        scales=scales or cfg.scales,
        data=cfg.data,
        fold=cfg.fold,
        limit=cfg.limit,
        seed=cfg.seed,
        device=cfg.device,
        uq_samples=0,
        baseline=True,
        lpips=lpips,
        progress=cfg.progress,
    )
    meta = {v[0]["variant"]: v[0] for v in variants}
    rows = []
    for r in result.rows:
        info = meta.get(r.model, {"variant": r.model})
        row = {**{k: info.get(k) for k in variants[0][0]}, **asdict(r)}
        row["variant"] = r.model
        rows.append(row)
    return rows, result.machine


def _config(cfg: StudyConfig, **extra: Any) -> dict[str, Any]:
    out = asdict(cfg)
    out["weights"] = dict(cfg.weights)
    out["scales"] = list(cfg.scales)
    out["steps"] = list(cfg.steps)
    out["models"] = list(cfg.models) if cfg.models else None
    out.update(extra)
    return out


def _title(result: StudyResult, n: int) -> str:
    cfg = result.config
    text = f"mrsisr study {result.name} ({cfg['size']} size, {cfg['data']}, {n} maps per scale)"
    return text + (" RANDOM WEIGHTS" if cfg.get("untrained") else "")


def _lines(
    result: StudyResult, png: Path, x: str, ys: Sequence[str], group: str, xlabel: str
) -> None:
    """One panel per (metric, scale): a line per `group` value over `x`."""
    import matplotlib.pyplot as plt

    rows = [r for r in result.rows if r["variant"] != "lr_input"]
    scales = sorted({r["scale"] for r in rows}, reverse=True)
    fig, axes = plt.subplots(
        len(ys), len(scales), figsize=(3.2 * len(scales), 2.6 * len(ys)), squeeze=False
    )
    for i, y in enumerate(ys):
        for j, s in enumerate(scales):
            ax = axes[i, j]
            for g in dict.fromkeys(r[group] for r in rows):
                pts = sorted(
                    (r[x], r[f"{y}_mean"]) for r in rows if r[group] == g and r["scale"] == s
                )
                ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=str(g), ms=3)
            base = [r for r in result.rows if r["variant"] == "lr_input" and r["scale"] == s]
            if base and base[0].get(f"{y}_mean") is not None:
                ax.axhline(base[0][f"{y}_mean"], color="gray", ls=":", lw=1, label="LR input")
            ax.set_title(f"×{s}", fontsize=8)
            ax.set_xlabel(xlabel, fontsize=8)
            ax.set_ylabel(y.replace("_", " ").upper(), fontsize=8)
            ax.tick_params(labelsize=7)
    axes[0, -1].legend(fontsize=6)
    fig.suptitle(_title(result, rows[0]["n_maps"]), fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


# ------------------------------------------------------------------------------------- studies
@STUDIES.register(
    "truncation",
    description="quality vs NFE: respace, DPM-Solver++, TDPM, FTDDM at 100/50/20 steps (Fig. 5)",
)
def truncation_study(cfg: StudyConfig) -> StudyResult:
    """Quality against sampling steps for the four fast samplers of Fig. 5.

    `respace` and `dpm_solver_pp` run the DDPM weights from T = 1000 with K steps; TDPM and FTDDM
    keep their truncated start and respace their 100-step chain to K steps (NFE K + 1).

    Args:
        cfg: Study settings (`cfg.steps` are the K values).

    Returns:
        The result; figure: SSIM and PSNR against NFE, one line per method.
    """
    from mrsisr.sr import sampling_overrides

    _check_weights(cfg, ["ddpm", "tdpm", "ftddm"])
    variants = []
    for k in cfg.steps:
        k = int(k)
        variants += [
            (
                {"variant": f"respace-{k}", "method": "respace", "steps": k},
                _pipeline(cfg, "ddpm", {"sampler": {"type": "respace", "steps": k, "tau_d": 1.0}}),
            ),
            (
                {"variant": f"dpm_solver_pp-{k}", "method": "dpm_solver_pp", "steps": k},
                _pipeline(cfg, "ddpm", {"sampler": {"type": "dpm_solver_pp", "steps": k}}),
            ),
            (
                {"variant": f"tdpm-{k}", "method": "tdpm", "steps": k},
                _pipeline(cfg, "tdpm", sampling_overrides("tdpm", cfg.size, steps=k)),
            ),
            (
                {"variant": f"ftddm-{k}", "method": "ftddm", "steps": k},
                _pipeline(cfg, "ftddm", sampling_overrides("ftddm", cfg.size, steps=k)),
            ),
        ]
    rows, machine = _bench(cfg, variants)
    return StudyResult(
        "truncation",
        rows,
        _config(cfg),
        machine,
        lambda r, p: _lines(r, p, "nfe", ["ssim", "psnr"], "method", "NFE"),
    )


@STUDIES.register(
    "solver", description="FTDDM's flow start with DPM-Solver++ at 50/20/10 steps (Table 4)"
)
def solver_study(cfg: StudyConfig) -> StudyResult:
    """FTDDM with its ancestral chain against FTDDM's flow start + DPM-Solver++ (Table 4).

    Args:
        cfg: Study settings.

    Returns:
        The result; figure: SSIM and PSNR against solver steps.
    """
    _check_weights(cfg, ["ftddm"])
    variants = [
        (
            {"variant": "ftddm-ancestral-100", "sampler": "ancestral", "steps": 100},
            _pipeline(cfg, "ftddm"),
        ),
    ]
    for k in (50, 20, 10):
        variants.append(
            (
                {"variant": f"ftddm-dpm_solver_pp-{k}", "sampler": "dpm_solver_pp", "steps": k},
                _pipeline(cfg, "ftddm", {"sampler": {"type": "dpm_solver_pp", "steps": k}}),
            )
        )
    rows, machine = _bench(cfg, variants)
    return StudyResult(
        "solver",
        rows,
        _config(cfg),
        machine,
        lambda r, p: _lines(r, p, "steps", ["ssim", "psnr"], "sampler", "sampler steps"),
    )


@STUDIES.register(
    "scale", description="FTDDM conditioned on other upscaling factors than the actual one (Fig. 6)"
)
def scale_study(cfg: StudyConfig) -> StudyResult:
    """Actual against conditioned upscaling factor (Fig. 6): best where they agree?

    FTDDM's networks are told `s` in {2, 2.67, 4, 5.33, 8} (matrices 32, 24, 16, 12, 8) while
    the input's actual factor is each of `cfg.scales`.

    Args:
        cfg: Study settings.

    Returns:
        The result (column `conditioned_scale`); figure: SSIM and PSNR against the conditioned
        factor, one panel per actual factor.
    """
    _check_weights(cfg, ["ftddm"])
    base = _pipeline(cfg, "ftddm")
    variants = []
    for matrix in (32, 24, 16, 12, 8):
        s = 64 / matrix
        variants.append(
            (
                {"variant": f"ftddm-s{s:.2f}", "conditioned_scale": round(s, 4)},
                ConditionedScale(base, s),
            )
        )
    rows, machine = _bench(cfg, variants)
    for r in rows:
        r["matches_actual"] = (
            None
            if r["conditioned_scale"] is None
            else abs(r["conditioned_scale"] - r["scale"]) < 1e-6
        )
    return StudyResult(
        "scale",
        rows,
        _config(cfg),
        machine,
        lambda r, p: _scale_plot(r, p),
    )


def _scale_plot(result: StudyResult, png: Path) -> None:
    import matplotlib.pyplot as plt

    rows = [r for r in result.rows if r["conditioned_scale"] is not None]
    fig, axes = plt.subplots(1, 2, figsize=(7, 2.8))
    for ax, y in zip(axes, ("ssim", "psnr")):
        for s in sorted({r["scale"] for r in rows}, reverse=True):
            pts = sorted((r["conditioned_scale"], r[f"{y}_mean"]) for r in rows if r["scale"] == s)
            (line,) = ax.plot(
                [p[0] for p in pts], [p[1] for p in pts], "o-", ms=3, label=f"actual ×{s}"
            )
            ax.axvline(s, color=line.get_color(), ls=":", lw=1)
        ax.set_xlabel("conditioned upscaling factor s", fontsize=8)
        ax.set_ylabel(y.upper(), fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7)
    fig.suptitle(_title(result, rows[0]["n_maps"]), fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


@STUDIES.register(
    "sharpness",
    description="FTDDM's tau_d sweep: fidelity (PSNR, SSIM) vs sharpness (LPIPS) (Fig. 7)",
)
def sharpness_study(cfg: StudyConfig) -> StudyResult:
    """The τd sweep of Fig. 7: fidelity (PSNR, SSIM) against perceptual distance (LPIPS).

    Args:
        cfg: Study settings.

    Returns:
        The result (columns `tau_d`, LPIPS AlexNet and VGG); figure: PSNR, SSIM and LPIPS
        against τd.
    """
    _check_weights(cfg, ["ftddm"])
    variants = [
        (
            {"variant": f"ftddm-tau_d{t:g}", "method": "ftddm", "tau_d": t},
            _pipeline(cfg, "ftddm", {"sampler": {"tau_d": t}}),
        )
        for t in (0.0, 0.3, 0.6, 0.9, 1.0)
    ]
    rows, machine = _bench(cfg, variants, lpips=("alex", "vgg"))
    return StudyResult(
        "sharpness",
        rows,
        _config(cfg),
        machine,
        lambda r, p: _lines(
            r, p, "tau_d", ["psnr", "ssim", "lpips_alex", "lpips_vgg"], "method", "τd"
        ),
    )


@dataclass(frozen=True)
class Ablation:
    """One variant of the ablation study (the paper's Tables 2 and 3).

    Attributes:
        recipe: Zoo recipe it is built from.
        overrides: Recipe overrides that make the variant.
        tables: The paper's tables it belongs to.
        mask: The flow is conditioned on the quality mask (the UNet always is).
        mri: The flow is conditioned on T1 and FLAIR (the UNet always is).
        guide: The flow was trained with the guide loss (`None`: there is no flow).
        t_trunc: Truncation step (0: the flow alone; 1000: the diffusion model alone).
        own_weights: The variant needs its own trained flow (else it is a shipped recipe).
    """

    recipe: str
    overrides: Mapping[str, Any]
    tables: tuple[int, ...]
    mask: bool = True
    mri: bool = True
    guide: bool | None = True
    t_trunc: int = 100
    own_weights: bool = True


ABLATIONS: dict[str, Ablation] = {
    "ftddm": Ablation("ftddm", {}, (2, 3), own_weights=False),
    "flow_only": Ablation("ftddm", {"pipeline": {"t_start": 0}}, (2,), t_trunc=0),
    "diffusion_only": Ablation("ddpm", {}, (2,), guide=None, t_trunc=1000, own_weights=False),
    "no_mask": Ablation(
        "ftddm",
        {"initializer": {"mask_channel": False, "flow": {"cond_channels": 3}}},
        (3,),
        mask=False,
    ),
    "no_mri": Ablation(
        "ftddm", {"initializer": {"mri": False, "flow": {"cond_channels": 2}}}, (3,), mri=False
    ),
    "no_guide": Ablation("ftddm", {"initializer": {"guide_weight": 0.0}}, (3,), guide=False),
}
"""The ablation variants by name. `diffusion_only` is DDPM (T = 1000, no flow) with its shipped
weights and `ftddm` the shipped FTDDM; the others pair FTDDM's shipped truncated UNet with a flow
trained like FTDDM's (same steps, batch, seed) but without one ingredient."""


def ablation_weights_path(variant: str, size: str) -> Path:
    """Where the shipped flow of an ablation variant lives.

    Args:
        variant: A name from [`ABLATIONS`][mrsisr.studies.ABLATIONS] with its own flow.
        size: Size variant.

    Returns:
        `zoo/weights/ablation/ftddm-<variant>-<size>.safetensors` (flow weights only).
    """
    from mrsisr.zoo import weights_dir

    return weights_dir() / "ablation" / f"ftddm-{variant}-{size}.safetensors"


def _ablation_pipeline(cfg: StudyConfig, name: str) -> Any:
    """Build a variant: FTDDM's (or the given) denoiser plus the variant's own flow."""
    from mrsisr.recipes import load_recipe
    from mrsisr.zoo import _check_trained_t_start, load_pipeline_weights, weights_path

    ab = ABLATIONS[name]
    if not ab.own_weights:
        if name in cfg.weights:
            return _pipeline(replace(cfg, weights={ab.recipe: cfg.weights[name]}), ab.recipe)
        return _pipeline(cfg, ab.recipe)
    recipe = load_recipe(ab.recipe, size=cfg.size, overrides=ab.overrides)
    pipe = recipe.build()
    flow = cfg.weights.get(name) or ablation_weights_path(name, cfg.size)
    if cfg.untrained and name not in cfg.weights and not Path(flow).is_file():
        return pipe.to(cfg.device).eval()
    if int(pipe.t_start) > 0:
        denoiser = cfg.weights.get(ab.recipe) or weights_path(ab.recipe, cfg.size)
        if Path(denoiser).exists() or not cfg.untrained:  # untrained: random, for tests
            load_pipeline_weights(pipe, denoiser, parts=["denoiser"])
    _check_trained_t_start(recipe, Path(flow))
    _check_variant_card(name, Path(flow))
    load_pipeline_weights(pipe, flow, parts=[p for p in pipe.parts() if p != "denoiser"])
    return pipe.to(cfg.device).eval()


def _flat(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _check_variant_card(name: str, source: Path) -> None:
    """Refuse weights whose card says they were trained without the variant's overrides."""
    from mrsisr.errors import CheckpointError
    from mrsisr.zoo import _card_of

    card = _card_of(source)
    if card is None or "resolved_recipe" not in card:
        return
    trained = _flat(card["resolved_recipe"])
    for key, value in _flat(ABLATIONS[name].overrides).items():
        if key in trained and trained[key] != value:
            toml = str(value).lower() if isinstance(value, bool) else value
            raise CheckpointError(
                f"{source}: trained with {key} = {trained[key]!r}, but the '{name}' variant needs "
                f"{value!r}; pass a run trained with --set {key}={toml}"
            )


def _check_ablation_weights(cfg: StudyConfig, names: Sequence[str]) -> None:
    from mrsisr.errors import CheckpointError
    from mrsisr.zoo import weights_path

    if cfg.untrained:
        return
    missing = []
    for name in names:
        ab = ABLATIONS[name]
        if name in cfg.weights:
            continue
        if not weights_path(ab.recipe, cfg.size).is_file() and ab.recipe not in cfg.weights:
            missing.append(f"{name} ({ab.recipe} weights)")
        elif ab.own_weights and not ablation_weights_path(name, cfg.size).is_file():
            missing.append(name)
    if missing:
        raise CheckpointError(
            f"the ablation study needs '{cfg.size}' weights for {', '.join(missing)}; train a "
            "variant with `mrsisr train ftddm --set ...` (see docs/bench.md) and pass "
            "--weights VARIANT=RUN"
        )


@STUDIES.register(
    "ablation",
    description="flow only / diffusion only / both (Table 2); no mask, MRIs, guide loss (Table 3)",
)
def ablation_study(cfg: StudyConfig) -> StudyResult:
    """The ablations of the paper's Tables 2 and 3, scored on the same maps.

    Table 2 pits the flow alone (`t_start = 0`: the flow models `x_0`, 1 NFE) and the diffusion
    model alone (DDPM, T = 1000) against FTDDM. Table 3 removes one ingredient from FTDDM's flow:
    the mask channel of its condition, the MRI channels, or the guide loss. Here the ablated
    flows share FTDDM's truncated UNet (which keeps every condition), so Table 3 measures what
    each ingredient brings to the flow's start; the paper does not say whether it also retrained
    its UNet. Wilcoxon p-values are against FTDDM (the first row).

    Weights: `ftddm` and `diffusion_only` use the shipped `ftddm` and `ddpm` weights; each other
    variant a flow from `zoo/weights/ablation/` or `--weights VARIANT=RUN` (a run of
    `mrsisr train ftddm --set ...` with that variant's overrides, see
    [`ABLATIONS`][mrsisr.studies.ABLATIONS]).

    Args:
        cfg: Study settings.

    Returns:
        The result (columns `tables`, `mask`, `mri`, `guide`, `t_trunc`); figure: SSIM and PSNR
        of each variant per scale.
    """
    names = list(ABLATIONS)
    _check_ablation_weights(cfg, names)
    variants = []
    for name in names:
        ab = ABLATIONS[name]
        info = {
            "variant": name,
            "tables": ",".join(map(str, ab.tables)),
            "mask": ab.mask,
            "mri": ab.mri,
            "guide": ab.guide,
            "t_trunc": ab.t_trunc,
        }
        variants.append((info, _ablation_pipeline(cfg, name)))
    rows, machine = _bench(cfg, variants)
    return StudyResult("ablation", rows, _config(cfg), machine, _ablation_plot)


def _ablation_plot(result: StudyResult, png: Path) -> None:
    import matplotlib.pyplot as plt
    import numpy as np

    rows = result.rows
    names = list(dict.fromkeys(r["variant"] for r in rows))
    scales = sorted({r["scale"] for r in rows}, reverse=True)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    width = 0.8 / len(names)
    for ax, y in zip(axes, ("ssim", "psnr")):
        for i, name in enumerate(names):
            vals = {r["scale"]: r for r in rows if r["variant"] == name}
            x = np.arange(len(scales)) + (i - (len(names) - 1) / 2) * width
            ax.bar(
                x,
                [vals[s][f"{y}_mean"] if s in vals else np.nan for s in scales],
                width,
                yerr=[vals[s][f"{y}_std"] if s in vals else 0 for s in scales],
                label=name,
                color="lightgray" if name == "lr_input" else None,
                error_kw={"lw": 0.6},
            )
        ax.set_xticks(range(len(scales)), [f"×{s}" for s in scales])
        ax.set_ylabel(y.upper(), fontsize=8)
        lo = min(r[f"{y}_mean"] - r[f"{y}_std"] for r in rows)
        ax.set_ylim(bottom=max(0.0, lo - 0.05 * abs(lo)))
        ax.tick_params(labelsize=7)
    axes[1].legend(fontsize=6, ncol=2)
    fig.suptitle(_title(result, rows[0]["n_maps"]), fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
