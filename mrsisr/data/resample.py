"""Resample a co-registered MRI onto the MRSI grid by averaging each MRSI voxel's footprint."""

from __future__ import annotations

import numpy as np

__all__ = ["resample_to_grid"]


def resample_to_grid(
    data: np.ndarray,
    src_affine: np.ndarray,
    dst_affine: np.ndarray,
    dst_shape: tuple[int, int, int],
) -> tuple[np.ndarray, float]:
    """Average a 3-D image over the footprint of every voxel of another grid (world coordinates).

    Each destination voxel is sampled at `n_x×n_y×n_z` evenly spaced points, `n` = the ratio of the
    voxel sizes rounded (at least 1), with trilinear interpolation, and the samples are averaged:
    an MRI stored at 3× in-plane and 3 sub-slices per MRSI slice is block-averaged exactly, one
    stored on the MRSI grid itself comes back unchanged.

    Args:
        data: Source image `(X, Y, Z)`.
        src_affine: 4×4 voxel-to-world affine of `data`.
        dst_affine: 4×4 voxel-to-world affine of the destination grid.
        dst_shape: Destination shape `(X', Y', Z')`.

    Returns:
        The resampled float32 image `(X', Y', Z')` and the fraction of sample points that fell
        outside the source volume (filled by the nearest edge value).
    """
    from scipy import ndimage

    src_vox = np.sqrt((src_affine[:3, :3] ** 2).sum(0))
    dst_vox = np.sqrt((dst_affine[:3, :3] ** 2).sum(0))
    n = np.maximum(1, np.rint(dst_vox / src_vox)).astype(int)
    offs = [(np.arange(k) + 0.5) / k - 0.5 for k in n]
    m = np.linalg.inv(src_affine) @ dst_affine
    grids = np.meshgrid(*[np.arange(s, dtype=np.float64) for s in dst_shape], indexing="ij")
    base = np.stack([g.ravel() for g in grids])  # (3, N)
    acc = np.zeros(base.shape[1], dtype=np.float64)
    outside = 0
    total = 0
    shape = np.array(data.shape[:3])
    for ox in offs[0]:
        for oy in offs[1]:
            for oz in offs[2]:
                pts = base + np.array([[ox], [oy], [oz]])
                src = m[:3, :3] @ pts + m[:3, 3:4]
                out = np.any((src < -0.5) | (src > shape[:, None] - 0.5), axis=0)
                outside += int(out.sum())
                total += out.size
                acc += ndimage.map_coordinates(data, src, order=1, mode="nearest")
    res = (acc / (len(offs[0]) * len(offs[1]) * len(offs[2]))).reshape(dst_shape)
    return res.astype(np.float32), outside / max(total, 1)
