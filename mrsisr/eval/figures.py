"""Figures of benches and studies, drawn with matplotlib's Agg backend (no display needed).

- [`save_grid`][mrsisr.eval.figures.save_grid]: the bench's qualitative figure;
- [`line_plot`][mrsisr.eval.figures.line_plot], [`bar_plot`][mrsisr.eval.figures.bar_plot],
  [`scale_plot`][mrsisr.eval.figures.scale_plot], [`delta_plot`][mrsisr.eval.figures.delta_plot]:
  the plot specs a study names (`plot(result, png)`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["bar_plot", "delta_plot", "line_plot", "save_grid", "scale_plot", "study_title"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_grid(result: Any, png: str | os.PathLike[str]) -> Path:
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
    plt = _pyplot()

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


def study_title(result: Any, n: int) -> str:
    """The title line of a study's figure: study, size, data, maps per scale.

    Args:
        result: A [`StudyResult`][mrsisr.eval.studies.base.StudyResult].
        n: Maps per scale.

    Returns:
        The title (marked when the weights were random).
    """
    cfg = result.config
    text = f"mrsisr study {result.name} ({cfg['size']} size, {cfg['data']}, {n} maps per scale)"
    return text + (" RANDOM WEIGHTS" if cfg.get("untrained") else "")


def line_plot(
    result: Any,
    png: Path,
    x: str,
    ys: Sequence[str],
    group: str,
    xlabel: str,
    reference: str | None = None,
) -> None:
    """One panel per (metric, scale): a line per `group` value over `x`; the LR input dotted.

    Args:
        result: A study result.
        png: Output file.
        x: Row key on the x axis (e.g. `nfe`).
        ys: Metrics, one row of panels each (e.g. `["ssim", "psnr"]`).
        group: Row key that makes one line per value (e.g. `method`).
        xlabel: The x axis label.
        reference: A `group` value drawn as a dashed horizontal line (e.g. DDPM-1000 in Fig. 5)
            instead of a point far out on the x axis.
    """
    plt = _pyplot()

    everything = [r for r in result.rows if r["variant"] != "lr_input"]
    refs = [r for r in everything if reference is not None and r[group] == reference]
    rows = [r for r in everything if r not in refs]
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
            for r in (r for r in refs if r["scale"] == s and r.get(f"{y}_mean") is not None):
                label = f"{r['variant']} ({r['n_maps']} maps)"
                ax.axhline(r[f"{y}_mean"], color="black", ls="--", lw=1, label=label)
            base = [r for r in result.rows if r["variant"] == "lr_input" and r["scale"] == s]
            if base and base[0].get(f"{y}_mean") is not None:
                ax.axhline(base[0][f"{y}_mean"], color="gray", ls=":", lw=1, label="LR input")
            ax.set_title(f"×{s}", fontsize=8)
            ax.set_xlabel(xlabel, fontsize=8)
            ax.set_ylabel(y.replace("_", " ").upper(), fontsize=8)
            ax.tick_params(labelsize=7)
    axes[0, -1].legend(fontsize=6)
    fig.suptitle(study_title(result, rows[0]["n_maps"]), fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def scale_plot(result: Any, png: Path) -> None:
    """SSIM and PSNR against the conditioned factor, one line per actual factor (Fig. 6).

    Args:
        result: The scale study's result (rows with `conditioned_scale`).
        png: Output file.
    """
    plt = _pyplot()

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
    fig.suptitle(study_title(result, rows[0]["n_maps"]), fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def bar_plot(result: Any, png: Path) -> None:
    """SSIM and PSNR bars (mean ± std) per variant, one group per scale (Tables 2 and 3).

    Args:
        result: A study result.
        png: Output file.
    """
    plt = _pyplot()

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
    fig.suptitle(study_title(result, rows[0]["n_maps"]), fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def delta_plot(result: Any, png: Path) -> None:
    """Bars: change in SSIM and PSNR from the projection, per model, one group per scale.

    Args:
        result: The consistency study's result (rows with `recipe`, `dc` and `phase`; a row
            with the acquisition's phase known gets its own bar group).
        png: Output file.
    """
    plt = _pyplot()

    rows = [r for r in result.rows if r.get("recipe")]
    # one bar group per projected row: (recipe, phase known) against the recipe's plain row
    groups = list(dict.fromkeys((r["recipe"], bool(r.get("phase"))) for r in rows if r["dc"]))
    labels = [f"{m} (phase)" if phase else m for m, phase in groups]
    scales = sorted({r["scale"] for r in rows}, reverse=True)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.0))
    width = 0.8 / max(1, len(scales))
    for ax, y in zip(axes, ("ssim", "psnr")):
        for j, s in enumerate(scales):
            delta = []
            for m, phase in groups:
                at = [r for r in rows if r["recipe"] == m and r["scale"] == s]
                dc = [r[f"{y}_mean"] for r in at if r["dc"] and bool(r.get("phase")) == phase]
                plain = [r[f"{y}_mean"] for r in at if not r["dc"]]
                delta.append(dc[0] - plain[0] if dc and plain else np.nan)
            ax.bar(np.arange(len(groups)) + j * width, delta, width, label=f"×{s}")
        ax.axhline(0, color="gray", lw=0.8)
        ax.set_xticks(np.arange(len(groups)) + width * (len(scales) - 1) / 2)
        ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=7)
        ax.set_ylabel(f"{y.upper()} with − without DC", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7)
    n = max(r["n_maps"] for r in rows) if rows else 0
    fig.suptitle(study_title(result, n), fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
