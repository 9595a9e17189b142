"""k-space degradation (SPEC §1)."""

import numpy as np
import pytest
import torch

from mrsisr.data import LR_SIZES, kspace_lowres, kspace_truncate, upscale_factor
from mrsisr.errors import DataError


def _rand(seed=0, shape=(64, 64)):
    return np.random.default_rng(seed).random(shape)


def test_lr_sizes_and_scale():
    assert LR_SIZES == (8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32)
    for size in LR_SIZES:
        assert upscale_factor(size) == pytest.approx(64 / size)
    assert upscale_factor(8) == 8.0 and upscale_factor(16) == 4.0 and upscale_factor(32) == 2.0
    for bad in (7, 0, 66, 2.5, True):
        with pytest.raises(DataError):
            upscale_factor(bad)


def test_full_size_is_identity_numpy_and_torch():
    x = _rand()
    np.testing.assert_allclose(kspace_lowres(x, 64), x, atol=1e-12)
    xt = torch.tensor(x, dtype=torch.float32)
    out = kspace_lowres(xt, 64)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    torch.testing.assert_close(out, xt, atol=1e-6, rtol=0)


def test_matches_reference_formula():
    # spelled-out reference: centred ortho FFT, block [32-d, 32+d), zero-fill, |IFFT|
    x = _rand(1)
    for size in (8, 16, 32):
        d = size // 2
        k = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x), norm="ortho"))
        z = np.zeros_like(k)
        z[32 - d : 32 + d, 32 - d : 32 + d] = k[32 - d : 32 + d, 32 - d : 32 + d]
        ref = np.abs(np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(z), norm="ortho")))
        np.testing.assert_allclose(kspace_lowres(x, size), ref, atol=1e-12)
        # the result is blurred: it differs from the input
        assert np.abs(kspace_lowres(x, size) - x).max() > 0.1


def test_truncating_twice_equals_once():
    x = _rand(2)
    for size in LR_SIZES:
        once = kspace_truncate(x, size)
        np.testing.assert_allclose(kspace_truncate(once, size), once, atol=1e-12)


def test_lowres_twice_equals_once_for_real_bandlimited_maps():
    # a map whose spectrum lies strictly inside the kept block has a real truncated image,
    # so the magnitude changes nothing and degrading again is the identity
    rng = np.random.default_rng(3)
    size = 16
    k = np.zeros((64, 64), complex)
    k[32 - 7 : 32 + 8, 32 - 7 : 32 + 8] = rng.normal(size=(15, 15)) + 1j * rng.normal(size=(15, 15))
    k = 0.5 * (k + np.conj(k[::-1, ::-1][np.r_[63, 0:63]][:, np.r_[63, 0:63]]))  # Hermitian
    x = np.real(np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k), norm="ortho")))
    x = x - x.min() + 0.5
    once = kspace_lowres(x, size)
    np.testing.assert_allclose(once, x, atol=1e-10)
    np.testing.assert_allclose(kspace_lowres(once, size), once, atol=1e-10)


def test_constant_map_stays_constant():
    for size in LR_SIZES:
        out = kspace_lowres(np.full((64, 64), 3.5, np.float32), size)
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, 3.5, atol=1e-5)


def test_batched_torch_matches_numpy_and_keeps_dtype():
    x = _rand(4, (2, 3, 64, 64))
    for size in (8, 20):
        ref = kspace_lowres(x, size)
        out = kspace_lowres(torch.tensor(x), size)
        assert out.shape == (2, 3, 64, 64) and out.dtype == torch.float64
        np.testing.assert_allclose(out.numpy(), ref, atol=1e-12)
        np.testing.assert_allclose(ref[1, 2], kspace_lowres(x[1, 2], size), atol=1e-12)


def test_bad_inputs():
    with pytest.raises(DataError):
        kspace_lowres(np.zeros(64), 8)
    with pytest.raises(DataError):
        kspace_lowres(np.zeros((64, 64)), 9)
    with pytest.raises(DataError):
        kspace_lowres([[0.0] * 64] * 64, 8)
