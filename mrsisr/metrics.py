"""Image-quality metrics of the paper's evaluation (SPEC §2), per map and batched.

The paper's `test.py` computes, for every 64×64 test map, scikit-image's

- `normalized_root_mse(gt, pred, normalization="euclidean")` = ‖gt − pred‖₂ / ‖gt‖₂,
- `peak_signal_noise_ratio(gt, pred, data_range=gt.max() - gt.min())`,
- `structural_similarity(gt, pred, data_range=gt.max() - gt.min())` with the defaults: a 7×7
  uniform window, K1 = 0.01, K2 = 0.03, sample covariance, averaged over the image minus a
  3-pixel border,

over the **whole image** (background zeros included), after the prediction was multiplied by the
quality mask `gt != 0`, clamped to [0, 1] and multiplied back by the map's maximum. So the inputs
of every function here are in the map's **original units** (`x * max_value`), not normalised.
scikit-image is only a test dependency: these functions reimplement the same formulas (in float64)
and the tests check that they agree with it to 1e-4.

Significance between two methods is a paired two-sided Wilcoxon signed-rank test over the same
maps ([`wilcoxon`][mrsisr.metrics.wilcoxon]).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mrsisr.errors import DataError

if TYPE_CHECKING:
    import torch

SSIM_WIN = 7
"""Side of the uniform SSIM window (scikit-image default)."""
SSIM_K1 = 0.01
"""SSIM stabiliser constant K1 (scikit-image default)."""
SSIM_K2 = 0.03
"""SSIM stabiliser constant K2 (scikit-image default)."""


def _prepare(pred: np.ndarray, gt: np.ndarray, apply_mask: bool) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape or pred.ndim != 2:
        raise DataError(
            f"metrics need two 2-D maps of the same shape, got {pred.shape} and {gt.shape}"
        )
    if apply_mask:
        pred = pred * (gt != 0)
    return pred, gt


def nrmse(pred: np.ndarray, gt: np.ndarray, *, apply_mask: bool = False) -> float:
    """Normalised root-mean-square error ‖gt − pred‖₂ / ‖gt‖₂ of one map.

    Equals `skimage.metrics.normalized_root_mse(gt, pred, normalization="euclidean")`.

    Args:
        pred: Predicted map `(H, W)` in original units.
        gt: Ground-truth map `(H, W)` in original units.
        apply_mask: Multiply `pred` by `gt != 0` first, as the paper's evaluation does.

    Returns:
        The NRMSE (lower is better); `inf` if `gt` is all zero.
    """
    pred, gt = _prepare(pred, gt, apply_mask)
    den = np.sqrt(np.sum(gt * gt))
    num = np.sqrt(np.sum((gt - pred) ** 2))
    return float(num / den) if den > 0 else float("inf")


def psnr(pred: np.ndarray, gt: np.ndarray, *, apply_mask: bool = False) -> float:
    """Peak signal-to-noise ratio `10·log10(R² / MSE)` with `R = gt.max() − gt.min()`, in dB.

    Equals `skimage.metrics.peak_signal_noise_ratio(gt, pred, data_range=gt.max() - gt.min())`.

    Args:
        pred: Predicted map `(H, W)` in original units.
        gt: Ground-truth map `(H, W)` in original units.
        apply_mask: Multiply `pred` by `gt != 0` first, as the paper's evaluation does.

    Returns:
        The PSNR in dB (higher is better); `inf` for a perfect prediction.
    """
    pred, gt = _prepare(pred, gt, apply_mask)
    data_range = gt.max() - gt.min()
    mse = np.mean((gt - pred) ** 2)
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(data_range**2 / mse))


def _box_valid(x: np.ndarray, w: int) -> np.ndarray:
    """Mean over every fully contained `w×w` window (the cropped region scikit-image averages)."""
    c = np.cumsum(np.cumsum(np.pad(x, ((1, 0), (1, 0))), axis=0), axis=1)
    s = c[w:, w:] - c[:-w, w:] - c[w:, :-w] + c[:-w, :-w]
    return s / (w * w)


def ssim(pred: np.ndarray, gt: np.ndarray, *, apply_mask: bool = False) -> float:
    """Structural similarity of one map (scikit-image defaults, `data_range = gt.max() − gt.min()`).

    Equals `skimage.metrics.structural_similarity(gt, pred, data_range=gt.max() - gt.min())`:
    7×7 uniform window, K1 = 0.01, K2 = 0.03, sample covariance (N/(N−1)), mean of the SSIM
    map over the pixels at least 3 from the border.

    Args:
        pred: Predicted map `(H, W)` in original units, at least 7×7.
        gt: Ground-truth map `(H, W)` in original units.
        apply_mask: Multiply `pred` by `gt != 0` first, as the paper's evaluation does.

    Returns:
        The mean SSIM (higher is better, at most 1).
    """
    pred, gt = _prepare(pred, gt, apply_mask)
    if min(gt.shape) < SSIM_WIN:
        raise DataError(f"SSIM needs maps of at least {SSIM_WIN}×{SSIM_WIN}, got {gt.shape}")
    data_range = gt.max() - gt.min()
    w = SSIM_WIN
    cov_norm = w * w / (w * w - 1.0)
    ux, uy = _box_valid(gt, w), _box_valid(pred, w)
    uxx, uyy, uxy = _box_valid(gt * gt, w), _box_valid(pred * pred, w), _box_valid(gt * pred, w)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return float(s.mean())


def batch_metrics(
    pred: torch.Tensor, gt: torch.Tensor, *, apply_mask: bool = False
) -> dict[str, torch.Tensor]:
    """NRMSE, PSNR and SSIM of every map in a batch, equal to the per-map functions.

    Computed in float64 on the inputs' device.

    Args:
        pred: Predicted maps `(B, 1, H, W)` (or `(B, H, W)`) in original units.
        gt: Ground-truth maps of the same shape in original units.
        apply_mask: Multiply `pred` by `gt != 0` first, as the paper's evaluation does.

    Returns:
        `{"nrmse": (B,), "psnr": (B,), "ssim": (B,)}` float64 tensors.
    """
    import torch
    import torch.nn.functional as F

    if pred.shape != gt.shape or pred.ndim not in (3, 4) or (pred.ndim == 4 and pred.shape[1] != 1):
        raise DataError(
            f"batch_metrics needs (B, 1, H, W) tensors of the same shape, got {tuple(pred.shape)} "
            f"and {tuple(gt.shape)}"
        )
    x = gt.reshape(gt.shape[0], 1, gt.shape[-2], gt.shape[-1]).double()
    y = pred.reshape(x.shape).to(device=x.device, dtype=torch.float64)
    if apply_mask:
        y = y * (x != 0)
    flat_x, flat_y = x.flatten(1), y.flatten(1)
    data_range = flat_x.amax(1) - flat_x.amin(1)
    err = ((flat_x - flat_y) ** 2).sum(1)
    nrm = torch.sqrt(err) / torch.sqrt((flat_x**2).sum(1))
    mse = err / flat_x.shape[1]
    ps = 10.0 * torch.log10(data_range**2 / mse)
    ps = torch.where(mse == 0, torch.full_like(ps, float("inf")), ps)

    w = SSIM_WIN
    cov_norm = w * w / (w * w - 1.0)

    def box(t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(t, w, stride=1)

    ux, uy = box(x), box(y)
    vx = cov_norm * (box(x * x) - ux * ux)
    vy = cov_norm * (box(y * y) - uy * uy)
    vxy = cov_norm * (box(x * y) - ux * uy)
    c1 = ((SSIM_K1 * data_range) ** 2).view(-1, 1, 1, 1)
    c2 = ((SSIM_K2 * data_range) ** 2).view(-1, 1, 1, 1)
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return {"nrmse": nrm, "psnr": ps, "ssim": s.flatten(1).mean(1)}


def wilcoxon(a: np.ndarray | list[float], b: np.ndarray | list[float]) -> float:
    """Two-sided paired Wilcoxon signed-rank test between two methods' per-map scores.

    Wraps `scipy.stats.wilcoxon(a, b)` (defaults: zero differences dropped by the Wilcox
    method, exact or normal-approximation p-value as scipy chooses). When every paired difference
    is zero there is no evidence of a difference and the p-value is 1.0.

    Args:
        a: Scores of method A, one per map, shape `(N,)`.
        b: Scores of method B on the same maps in the same order, shape `(N,)`.

    Returns:
        The p-value.
    """
    from scipy import stats

    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape or a.size == 0:
        raise DataError(
            f"wilcoxon needs two non-empty score lists of equal length, got {a.size} and {b.size}"
        )
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise DataError(
            "wilcoxon got non-finite scores (e.g. PSNR = inf for a perfect map); drop them first"
        )
    if np.all(a - b == 0):
        return 1.0
    return float(stats.wilcoxon(a, b).pvalue)
