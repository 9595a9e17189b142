"""k-space helpers shared by the degradation, MUNet's FFT layers and the consistency projection.

One convention everywhere (SPEC §1): the centred, orthonormal 2-D FFT over the last two axes,
`K = fftshift(fft2(ifftshift(x)))`, with the zero frequency at `(H // 2, W // 2)`. A matrix of
`L×L` measured frequencies is the block `[n/2 - L/2, n/2 + L/2)` in both axes.

Examples:
    >>> import numpy as np
    >>> from mrsisr.kspace import fft2c, ifft2c
    >>> x = np.random.default_rng(0).random((8, 8))
    >>> bool(np.allclose(ifft2c(fft2c(x)).real, x))
    True
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np

ArrayT = TypeVar("ArrayT")

__all__ = ["block_mask", "block_slice", "fft2c", "ifft2c", "scale_block_mask"]


def fft2c(x: ArrayT) -> ArrayT:
    """Centred orthonormal 2-D FFT over the last two axes.

    Args:
        x: Real or complex images `(..., H, W)`: a numpy array or a torch tensor.

    Returns:
        Complex k-space of the same shape and kind, the zero frequency at `(H // 2, W // 2)`.
    """
    if isinstance(x, np.ndarray):
        ax = (-2, -1)
        return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=ax), norm="ortho"), axes=ax)
    import torch

    dim = (-2, -1)
    return torch.fft.fftshift(
        torch.fft.fft2(torch.fft.ifftshift(x, dim=dim), norm="ortho"), dim=dim
    )


def ifft2c(k: ArrayT) -> ArrayT:
    """Inverse of [`fft2c`][mrsisr.kspace.fft2c].

    Args:
        k: Centred complex k-space `(..., H, W)`: a numpy array or a torch tensor.

    Returns:
        Complex images of the same shape and kind.
    """
    if isinstance(k, np.ndarray):
        ax = (-2, -1)
        return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=ax), norm="ortho"), axes=ax)
    import torch

    dim = (-2, -1)
    return torch.fft.fftshift(
        torch.fft.ifft2(torch.fft.ifftshift(k, dim=dim), norm="ortho"), dim=dim
    )


def block_slice(n: int, size: int) -> slice:
    """The measured block `[n/2 - size/2, n/2 + size/2)` of one axis, as a slice.

    Args:
        n: Grid size.
        size: Measured matrix size (even).

    Returns:
        The slice.
    """
    return slice(n // 2 - size // 2, n // 2 + size // 2)


def block_mask(half: Any, size: int, *, symmetric: bool = False) -> Any:
    """Boolean mask of the central k-space block of each sample.

    Args:
        half: Half LR size `d` per sample, an integer-valued tensor `(B,)`.
        size: Matrix size `H = W` (centre `c = size // 2`).
        symmetric: Use the Hermitian-closed block `[c - d, c + d]` (`2d + 1` wide) instead of the
            LR block `[c - d, c + d)` of SPEC §1.

    Returns:
        `(B, 1, size, size)` bool tensor, True inside each sample's central block.
    """
    import torch

    c = size // 2
    idx = torch.arange(size, device=half.device)
    d = half.reshape(-1, 1).to(idx.device)
    inside = (idx >= c - d) & ((idx <= c + d) if symmetric else (idx < c + d))  # (B, size)
    return (inside[:, :, None] & inside[:, None, :]).unsqueeze(1)


def scale_block_mask(scale: Any, n: int = 64) -> Any:
    """Boolean `(B, 1, n, n)` mask of each sample's measured block, from its upscaling factor.

    Args:
        scale: Upscaling factors `(B,)` (a tensor); `L = round(n / s)`, clamped to `[2, n]`.
        n: Grid size.

    Returns:
        The block masks, on `scale`'s device.
    """
    import torch

    sizes = torch.round(n / scale.double()).long().clamp(2, n)
    return block_mask(sizes // 2, n)


def real_phase(images: np.ndarray, size: int | None = None) -> tuple[np.ndarray, float]:
    """Rotate complex acquisitions to the phase of a real map, and say how real they then are.

    A metabolite map is real and non-negative, so its k-space is Hermitian (`K(-k) = conj
    K(k)`) and its zero frequency (the sum of the map) is real and positive. A scanner's
    complex data usually carry a global phase on top; this removes it per image (the phase of
    each image's zero frequency) and measures what remains non-Hermitian among the frequency
    pairs that are both inside the grid: noise, or a phase that varies across the image, which
    no global rotation removes.

    Args:
        images: Complex images `(..., H, W)` (e.g. zero-filled acquisitions on the 64×64 grid).
        size: The acquired matrix `L` of zero-filled images: only frequency pairs inside the
            central `L×L` block count (`None`: the whole grid).

    Returns:
        `(rotated, asymmetry)`: the images times `exp(-i·phase)`, complex64, and
        `||K - conj(K(-k))|| / (2 ||K||)` over all images (0 for a real map; 1 for a purely
        imaginary non-Hermitian spectrum).

    Examples:
        >>> import numpy as np
        >>> from mrsisr.kspace import real_phase
        >>> x = np.random.default_rng(0).random((2, 16, 16))
        >>> rotated, asym = real_phase(x * np.exp(1j * 0.7))
        >>> bool(np.allclose(rotated, x, atol=1e-6)), asym < 1e-6
        (True, True)
    """
    img = np.asarray(images, dtype=np.complex128)
    k = fft2c(img)
    h, w = img.shape[-2:]
    dc = k[..., h // 2, w // 2]
    rot = np.where(np.abs(dc) > 0, np.conj(dc) / np.maximum(np.abs(dc), 1e-300), 1.0)
    k = k * rot[..., None, None]
    mirror = np.roll(np.flip(k, axis=(-2, -1)), (1, 1), axis=(-2, -1))  # K(-k), centred layout
    inside = np.zeros((h, w), bool)
    inside[block_slice(h, size or h), block_slice(w, size or w)] = True
    paired = inside & np.roll(np.flip(inside), (1, 1), axis=(0, 1))  # both k and -k inside
    num = np.linalg.norm((k - np.conj(mirror))[..., paired])
    den = 2.0 * np.linalg.norm(k[..., paired])
    asym = float(num / den) if den > 0 else 0.0
    return (img * rot[..., None, None]).astype(np.complex64), asym
