"""`mrsisr study consistency`: every model with and without k-space data consistency.

For each recipe the study benches the model as published and the same weights with
`[consistency] type = "kspace"` (the `+dc` row) on the same maps, so each `+dc` row's Wilcoxon
p-value compares it with its own model. FTDDM also gets a `+dcp` row: the same projection with
the acquisition's phase known (the protocol's complex truncated image), which shows what
estimating the measured block from the LR magnitude costs. 1000-NFE models (DDPM) run on
`cfg.slow_limit` maps. Every row is scored by SSIM, PSNR, NRMSE and LPIPS (AlexNet and VGG).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from mrsisr.eval.figures import delta_plot
from mrsisr.eval.studies.base import (
    StudyConfig,
    StudyResult,
    check_weights,
    per_map_scores,
    study_cache,
    study_config,
    study_pipeline,
)
from mrsisr.registries import STUDIES

CONSISTENCY_MODELS = (
    "ftddm",
    "tdpm",
    "ddpm_respace",
    "dpm_solver_pp",
    "munet_fs_cwgan",
    "flow_enhancer",
    "ddpm",
)
"""The recipes the consistency study compares, cheapest first (DDPM-1000 last)."""

DC = {"consistency": {"type": "kspace"}}

LPIPS = ("alex", "vgg")
"""The LPIPS backbones every row is scored with, besides SSIM, PSNR and NRMSE."""

PHASE_MODELS = ("ftddm",)
"""Recipes that also get a `+dcp` row: data consistency with the acquisition's phase known (the
protocol's complex truncated image), which measures what the magnitude-only estimate costs."""


@STUDIES.register(
    "consistency", description="every model with and without k-space data consistency (+dc)"
)
def consistency_study(cfg: StudyConfig) -> StudyResult:
    """Each recipe as published against the same weights with the k-space projection.

    Args:
        cfg: Study settings (`cfg.limit` maps per scale, `cfg.slow_limit` for 1000-NFE models;
            `cfg.models` narrows the recipes).

    Returns:
        The result; figure: SSIM and PSNR change from the projection, per model and scale.
    """
    from mrsisr.eval.bench import run_bench
    from mrsisr.eval.runner import SLOW_NFE

    names = list(cfg.models or CONSISTENCY_MODELS)
    check_weights(cfg, names)
    rows: list[dict[str, Any]] = []
    machine = ""
    scores: dict[str, Any] = {}
    # rows are checked by name and fingerprint; the LPIPS backbones belong to the identity
    cache = study_cache(cfg, "consistency", lpips=list(LPIPS))
    for name in names:
        plain = study_pipeline(cfg, name)
        if int(plain.nfe) >= SLOW_NFE and cfg.skip_slow:
            continue
        dc = study_pipeline(cfg, name, DC)
        phase = [(f"{name}+dcp", dc)] if name in PHASE_MODELS else []
        result = run_bench(
            [(name, plain), (f"{name}+dc", dc), *phase],
            scales=cfg.scales,
            data=cfg.data,
            fold=cfg.fold,
            limit=cfg.limit,
            slow_limit=cfg.slow_limit,  # 1000-NFE models: the first of the same maps
            seed=cfg.seed,
            device=cfg.device,
            uq_samples=0,
            baseline=not rows,  # the LR row once: the slow rows pair with its first maps
            lpips=LPIPS,
            progress=cfg.progress,
            cache=cache,
            batch=cfg.batch,
            channels_last=cfg.channels_last,
        )
        machine = result.machine
        scores |= per_map_scores(result)
        for r in result.rows:
            row = asdict(r)
            row["variant"] = r.model
            row["recipe"] = name if r.model != "lr_input" else None
            row["dc"] = r.model.endswith(("+dc", "+dcp"))
            row["phase"] = r.model.endswith("+dcp")
            rows.append(row)
    return StudyResult("consistency", rows, study_config(cfg), machine, delta_plot, scores=scores)
