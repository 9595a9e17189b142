"""`mrsisr study consistency`: every model with and without k-space data consistency.

For each recipe the study benches the model as published and the same weights with
`[consistency] type = "kspace"` (the `+dc` row) on the same maps, so each `+dc` row's Wilcoxon
p-value compares it with its own model. 1000-NFE models (DDPM) run on `cfg.slow_limit` maps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mrsisr.registries import STUDIES
from mrsisr.studies import StudyConfig, StudyResult, _check_weights, _config, _pipeline, _title

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
    from dataclasses import asdict

    from mrsisr.bench import run_bench

    names = list(cfg.models or CONSISTENCY_MODELS)
    _check_weights(cfg, names)
    rows: list[dict[str, Any]] = []
    machine = ""
    for name in names:
        plain = _pipeline(cfg, name)
        slow = int(plain.nfe) >= 500
        limit = cfg.limit if not slow or cfg.limit is None else min(cfg.limit, cfg.slow_limit)
        result = run_bench(
            [(name, plain), (f"{name}+dc", _pipeline(cfg, name, DC))],
            scales=cfg.scales,
            data=cfg.data,
            fold=cfg.fold,
            limit=limit,
            seed=cfg.seed,
            device=cfg.device,
            uq_samples=0,
            baseline=not rows or slow,  # the LR row once, and again for the smaller map set
            progress=cfg.progress,
        )
        machine = result.machine
        for r in result.rows:
            row = asdict(r)
            row["variant"] = (
                r.model if r.model != "lr_input" or not slow else "lr_input (DDPM maps)"
            )
            row["recipe"] = name if r.model != "lr_input" else None
            row["dc"] = r.model.endswith("+dc")
            rows.append(row)
    return StudyResult("consistency", rows, _config(cfg), machine, _plot)


def _plot(result: StudyResult, png: Path) -> None:
    """Bars: change in SSIM and PSNR from the projection, per model, one group per scale."""
    import matplotlib.pyplot as plt
    import numpy as np

    rows = [r for r in result.rows if r.get("recipe")]
    models = list(dict.fromkeys(r["recipe"] for r in rows))
    scales = sorted({r["scale"] for r in rows}, reverse=True)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.0))
    width = 0.8 / max(1, len(scales))
    for ax, y in zip(axes, ("ssim", "psnr")):
        for j, s in enumerate(scales):
            delta = []
            for m in models:
                by = {r["dc"]: r[f"{y}_mean"] for r in rows if r["recipe"] == m and r["scale"] == s}
                delta.append(by.get(True, np.nan) - by.get(False, np.nan))
            ax.bar(np.arange(len(models)) + j * width, delta, width, label=f"×{s}")
        ax.axhline(0, color="gray", lw=0.8)
        ax.set_xticks(np.arange(len(models)) + width * (len(scales) - 1) / 2)
        ax.set_xticklabels(models, rotation=30, ha="right", fontsize=7)
        ax.set_ylabel(f"{y.upper()} with − without DC", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7)
    n = max(r["n_maps"] for r in rows) if rows else 0
    fig.suptitle(_title(result, n), fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
