"""Metrics equal scikit-image's with the paper's arguments (SPEC §2)."""

import numpy as np
import pytest
import torch
from skimage.metrics import normalized_root_mse, peak_signal_noise_ratio, structural_similarity

from mrsisr.errors import DataError
from mrsisr.metrics import batch_metrics, nrmse, psnr, ssim, wilcoxon


def _skimage(pred, gt):
    r = gt.max() - gt.min()
    return (
        normalized_root_mse(gt, pred, normalization="euclidean"),
        peak_signal_noise_ratio(gt, pred, data_range=r),
        structural_similarity(gt, pred, data_range=r),
    )


def _pairs(seed=0, n=6):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        gt = rng.random((64, 64)) * (1 + 9 * i)
        if i % 2:  # masked map: zeros outside a blob, like the quality-filtered maps
            yy, xx = np.mgrid[:64, :64]
            gt = gt * (((yy - 32) ** 2 + (xx - 30) ** 2) < 24**2)
        pred = np.clip(gt + rng.normal(0, 0.1 * gt.max(), gt.shape), 0, None)
        out.append((pred, gt))
    return out


def test_equal_skimage_on_random_maps():
    for pred, gt in _pairs():
        n, p, s = _skimage(pred, gt)
        assert nrmse(pred, gt) == pytest.approx(n, abs=1e-4)
        assert psnr(pred, gt) == pytest.approx(p, abs=1e-4)
        assert ssim(pred, gt) == pytest.approx(s, abs=1e-4)


def test_equal_skimage_on_float32_inputs():
    pred, gt = _pairs(1, 2)[1]
    pred, gt = pred.astype(np.float32), gt.astype(np.float32)
    n, p, s = _skimage(pred, gt)
    assert nrmse(pred, gt) == pytest.approx(n, abs=1e-4)
    assert psnr(pred, gt) == pytest.approx(p, abs=1e-4)
    assert ssim(pred, gt) == pytest.approx(s, abs=1e-4)


def test_apply_mask_multiplies_prediction_by_gt_nonzero():
    pred, gt = _pairs(2, 2)[1]
    noisy = pred + 0.5  # non-zero outside the mask
    masked = noisy * (gt != 0)
    assert nrmse(noisy, gt, apply_mask=True) == pytest.approx(nrmse(masked, gt))
    assert ssim(noisy, gt, apply_mask=True) == pytest.approx(ssim(masked, gt))
    assert psnr(noisy, gt, apply_mask=True) > psnr(noisy, gt)


def test_batch_metrics_equal_per_map():
    pairs = _pairs(3)
    pred = torch.tensor(np.stack([p for p, _ in pairs]))[:, None].float()
    gt = torch.tensor(np.stack([g for _, g in pairs]))[:, None].float()
    out = batch_metrics(pred, gt)
    assert set(out) == {"nrmse", "psnr", "ssim"}
    for i in range(len(pairs)):
        p, g = pred[i, 0].double().numpy(), gt[i, 0].double().numpy()
        assert out["nrmse"][i].item() == pytest.approx(nrmse(p, g), abs=1e-9)
        assert out["psnr"][i].item() == pytest.approx(psnr(p, g), abs=1e-9)
        assert out["ssim"][i].item() == pytest.approx(ssim(p, g), abs=1e-9)
    masked = batch_metrics(pred + 1, gt, apply_mask=True)
    assert masked["ssim"][1].item() == pytest.approx(
        ssim(pred[1, 0].numpy() + 1, gt[1, 0].numpy(), apply_mask=True), abs=1e-9
    )


def test_perfect_prediction():
    gt = np.random.default_rng(4).random((64, 64))
    assert nrmse(gt, gt) == 0.0 and psnr(gt, gt) == float("inf")
    assert ssim(gt, gt) == pytest.approx(1)
    out = batch_metrics(torch.tensor(gt)[None, None], torch.tensor(gt)[None, None])
    assert torch.isinf(out["psnr"]).all() and out["ssim"].item() == pytest.approx(1)


def test_wilcoxon():
    rng = np.random.default_rng(5)
    a = rng.random(30)
    assert wilcoxon(a, a) == 1.0
    assert wilcoxon(a, a + 0.1) < 1e-4
    from scipy.stats import wilcoxon as ref

    b = a + rng.normal(0, 0.1, 30)
    assert wilcoxon(a, b) == pytest.approx(ref(a, b).pvalue)
    with pytest.raises(DataError):
        wilcoxon(a, a[:5])
    with pytest.raises(DataError):
        psnr(a, a)
