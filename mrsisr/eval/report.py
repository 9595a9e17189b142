"""Reporting: bench rows and their statistics, and the one way results are written to disk.

A bench or a study reports per model and scale a [`BenchRow`][mrsisr.eval.report.BenchRow]: mean
and standard deviation of every metric over the maps, with paired two-sided Wilcoxon p-values
against the first model and against the zero-filled input. Files are written under a temporary
name and renamed into place ([`write_json`][mrsisr.eval.report.write_json],
[`write_csv_rows`][mrsisr.eval.report.write_csv_rows]), so a crash never leaves half a table.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["LR_INPUT", "METRICS", "BenchRow", "summarize", "write_csv_rows", "write_json"]

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


def _paired_p(a: np.ndarray, b: np.ndarray) -> float | None:
    """Paired Wilcoxon p over the maps both scored (a slow model scores the first n maps)."""
    from mrsisr.metrics import wilcoxon

    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    both = np.isfinite(a) & np.isfinite(b)
    return float(wilcoxon(a[both], b[both])) if both.any() else None


def summarize(
    model: str,
    scale: int,
    scores: Mapping[str, np.ndarray],
    *,
    ref: Mapping[str, np.ndarray] | None = None,
    lr: Mapping[str, np.ndarray] | None = None,
    nfe: int = 0,
    sec_per_slice: float = 0.0,
    params: int = 0,
    weights: str = "-",
) -> BenchRow:
    """Turn per-map scores into a row: means, standard deviations and paired p-values.

    Maps where any metric is not finite are left out of the means (and counted out of `n_maps`).

    Args:
        model: Row name.
        scale: Upscaling factor.
        scores: Metric → per-map values.
        ref: The first model's scores on the same maps (`p_<metric>`); `None` or `scores`
            itself leaves the p-values out.
        lr: The zero-filled input's scores on the same maps (`p_psnr_lr`, `p_ssim_lr`).
        nfe: Network evaluations per map.
        sec_per_slice: Measured seconds per map.
        params: Parameters counted as in Table 1.
        weights: Where the weights came from.

    Returns:
        The row.
    """
    finite = np.all([np.isfinite(scores[k]) for k in scores], axis=0)
    stats: dict[str, Any] = {}
    for k, values in scores.items():
        v = values[finite]
        stats[f"{k}_mean"] = float(v.mean()) if v.size else math.nan
        stats[f"{k}_std"] = float(v.std()) if v.size else math.nan
        if ref is not None and ref is not scores:
            stats[f"p_{k}"] = _paired_p(np.where(finite, values, np.nan), ref[k])
    if lr is not None and lr is not scores:
        stats["p_psnr_lr"] = _paired_p(scores["psnr"], lr["psnr"])
        stats["p_ssim_lr"] = _paired_p(scores["ssim"], lr["ssim"])
    return BenchRow(
        model=model,
        scale=int(scale),
        nfe=int(nfe),
        sec_per_slice=float(sec_per_slice),
        params=int(params),
        n_maps=int(finite.sum()),
        weights=weights,
        **stats,
    )


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    raise TypeError(f"not JSON-able: {type(obj).__name__}")


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write JSON (numpy scalars allowed) under a temporary name, then rename it into place.

    Args:
        path: Output file.
        data: JSON-able data.

    Returns:
        The written file.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")
    os.replace(tmp, path)
    return path


def write_csv_rows(path: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write dict rows as CSV (header from the first row) under a temporary name, then rename.

    Args:
        path: Output file.
        rows: The rows; every row has the first row's keys.

    Returns:
        The written file.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
    return path
