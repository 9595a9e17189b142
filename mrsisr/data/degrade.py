"""Low-resolution inputs by k-space truncation (SPEC §1, the authors' `RandomDownscale_function`).

The high-resolution map is treated as a real image on the 64×64 grid. Its centred, orthonormal 2-D
Fourier transform is computed, only the central `L×L` block `[32 - L/2, 32 + L/2)` of k-space is
kept (the rest is zero-filled), and the inverse transform's **magnitude** is the low-resolution
map, still on the 64×64 grid. No apodisation window is applied. The upscaling factor is
`s = 64 / L`, from 8 (L = 8) to 2 (L = 32).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import numpy as np

from mrsisr.errors import DataError
from mrsisr.kspace import block_slice, fft2c, ifft2c

if TYPE_CHECKING:
    import torch

GRID = 64
"""In-plane matrix size of the high-resolution MRSI grid."""

LR_SIZES: tuple[int, ...] = tuple(range(8, 33, 2))
"""The 13 low-resolution matrix sizes `L = 2·div`, `div ∈ {4, …, 16}` (8, 10, …, 32)."""

ArrayT = TypeVar("ArrayT", "np.ndarray", "torch.Tensor")


def upscale_factor(size: int) -> float:
    """Upscaling factor `s = 64 / L` of a low-resolution matrix size.

    Args:
        size: Low-resolution matrix size `L` (an even number from 2 to 64).

    Returns:
        `64 / size`, e.g. 4.0 for `size = 16`.
    """
    _check_size(size, GRID)
    return GRID / size


def _check_size(size: int, n: int) -> None:
    if isinstance(size, bool) or int(size) != size or size < 2 or size > n or size % 2:
        raise DataError(f"low-resolution size {size!r}: use an even integer between 2 and {n}")


def kspace_truncate(x: ArrayT, size: int) -> ArrayT:
    """Keep the central `size×size` block of the centred orthonormal k-space of `x` (complex).

    This is the linear part of [`kspace_lowres`][mrsisr.data.degrade.kspace_lowres]: an orthogonal
    projection, so applying it twice equals applying it once.

    Args:
        x: Map(s) of shape `(..., H, W)`, a numpy array or a torch tensor (real or complex).
        size: Low-resolution matrix size `L`, even, at most `min(H, W)`.

    Returns:
        The complex image `ifft2(K · 1[block])` with the same shape as `x` (complex128 for numpy
        float64 input, complex64 for float32; likewise for torch).
    """
    if not hasattr(x, "ndim") or not hasattr(x, "shape"):
        raise DataError(
            f"k-space truncation needs a numpy array or a torch tensor, got {type(x).__name__}"
        )
    if x.ndim < 2:
        raise DataError(f"k-space truncation needs shape (..., H, W), got shape {tuple(x.shape)}")
    h, w = x.shape[-2], x.shape[-1]
    _check_size(size, min(h, w))
    rows, cols = block_slice(h, size), block_slice(w, size)
    if isinstance(x, np.ndarray):
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.complexfloating)):
            x = x.astype(np.float64)
        k = fft2c(x)
        kept = np.zeros_like(k)
        kept[..., rows, cols] = k[..., rows, cols]
        return ifft2c(kept)
    import torch

    if not isinstance(x, torch.Tensor):
        raise DataError(
            f"k-space truncation needs a numpy array or a torch tensor, got {type(x).__name__}"
        )
    if not (x.is_floating_point() or x.is_complex()):
        x = x.double()
    k = fft2c(x)
    kept = torch.zeros_like(k)
    kept[..., rows, cols] = k[..., rows, cols]
    return ifft2c(kept)


def kspace_lowres(x: ArrayT, size: int) -> ArrayT:
    """Simulate a low-resolution acquisition by truncating k-space to its central `size×size` block.

    `K = fftshift(fft2(ifftshift(x)))` with orthonormal scaling; keep `K[32-size/2 : 32+size/2]` in
    both in-plane axes, zero elsewhere; `x_LR = |ifft2(K)|` (centred, orthonormal). At
    `size = 64` a non-negative map comes back unchanged (up to round-off). Because the kept
    frequencies `-size/2 … size/2-1` are asymmetric, the truncated image is complex and the
    magnitude is not a projection: degrading an already degraded map changes it slightly (a few
    per cent of the maximum on random maps), unless its spectrum already lies inside the block
    and its truncated image is real and non-negative.

    Args:
        x: Real map(s) of shape `(..., H, W)` (64×64 in mrsisr), a numpy array or a torch tensor.
        size: Low-resolution matrix size `L`, even, at most `min(H, W)`.

    Returns:
        The low-resolution magnitude image, same shape, type and device as `x`; same dtype for
        floating input (float64 for integer input).

    Examples:
        >>> import numpy as np
        >>> from mrsisr.data import kspace_lowres
        >>> x = np.ones((64, 64), dtype=np.float32)
        >>> y = kspace_lowres(x, 16)
        >>> y.shape, y.dtype, bool(np.allclose(y, 1.0, atol=1e-6))
        ((64, 64), dtype('float32'), True)
    """
    img = kspace_truncate(x, size)
    if isinstance(x, np.ndarray):
        out_dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
        return np.abs(img).astype(out_dtype, copy=False)
    out = img.abs()
    return out.to(x.dtype) if x.is_floating_point() else out


def zero_fill(x: np.ndarray, grid: int = GRID, *, magnitude: bool = True) -> np.ndarray:
    """Zero-fill native low-resolution maps to the `grid×grid` MRSI grid through k-space.

    A map acquired on an `L×L` matrix is the inverse transform of the central `L×L` block of
    k-space. Placing that block, unchanged, in the centre of a zero `grid×grid` k-space (same
    centred, orthonormal convention as [`kspace_truncate`][mrsisr.data.degrade.kspace_truncate])
    and taking the magnitude of the inverse transform gives the low-resolution map exactly as the
    protocol makes it from a `grid×grid` map. The amplitude is rescaled by `grid / L` so that a
    constant map keeps its value.

    Args:
        x: Real or complex maps `(..., L, L)`, `L` even and at most `grid`.
        grid: Output matrix size (64 in mrsisr).
        magnitude: Return the magnitude (the protocol's LR map). `False` returns the complex
            zero-filled image itself, with its phase: the acquisition as measured, whose central
            k-space block is exactly the acquired one (what data consistency keeps, see
            [`KSpaceConsistency`][mrsisr.consistency.KSpaceConsistency]).

    Returns:
        float32 magnitude maps `(..., grid, grid)`, or complex64 images with `magnitude=False`.

    Raises:
        DataError: If the maps are not square with an even size of at most `grid`.

    Examples:
        >>> import numpy as np
        >>> from mrsisr.data.degrade import zero_fill
        >>> y = zero_fill(np.full((16, 16), 3.0))
        >>> y.shape, bool(np.allclose(y, 3.0, atol=1e-5))
        ((64, 64), True)
    """
    x = np.asarray(x)
    if x.ndim < 2 or x.shape[-1] != x.shape[-2]:
        raise DataError(f"zero-filling needs square maps (..., L, L), got shape {x.shape}")
    size = int(x.shape[-1])
    _check_size(size, grid)
    k = fft2c(x)
    full = np.zeros((*x.shape[:-2], grid, grid), dtype=np.complex128)
    block = block_slice(grid, size)
    full[..., block, block] = k
    img = ifft2c(full) * (grid / size)
    if not magnitude:
        return img.astype(np.complex64)
    return np.abs(img).astype(np.float32)


def zero_fill_affine(affine: np.ndarray, size: int, grid: int = GRID) -> np.ndarray:
    """The affine of the `grid×grid` zero-filled grid, from a native `size×size` map's affine.

    In the centred FFT convention the native voxel `i` and the fine voxel `u` sample the same
    point when `u - grid/2 = (i - size/2) · grid/size`, that is `i = u · size/grid`: the field of
    view and its centre are kept, the in-plane voxels are `grid/size` times smaller.

    Args:
        affine: 4×4 voxel-to-world affine of the native maps (index order `(x, y, slice)`).
        size: Native in-plane matrix `L`.
        grid: Output matrix size.

    Returns:
        The 4×4 affine of the zero-filled maps.
    """
    f = size / grid
    return np.asarray(affine, dtype=np.float64) @ np.diag([f, f, 1.0, 1.0])


def nearest_native_index(size: int, grid: int = GRID) -> np.ndarray:
    """For each voxel `u` of the zero-filled `grid`, the native voxel nearest to it.

    The geometry of [`zero_fill_affine`][mrsisr.data.degrade.zero_fill_affine]: `i = u · size /
    grid`, rounded and kept inside `0 … size - 1`. Used to carry masks given on the acquired grid
    onto the 64×64 one.

    Args:
        size: Native in-plane matrix `L`.
        grid: Output matrix size.

    Returns:
        Integer indices `(grid,)`.

    Examples:
        >>> from mrsisr.data.degrade import nearest_native_index
        >>> nearest_native_index(16)[:10].tolist()
        [0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    """
    return np.minimum(np.floor(np.arange(grid) * size / grid + 0.5).astype(int), size - 1)
