"""Joint augmentation of a map, its mask and its MRIs (SPEC §1, the authors' training loader).

One random transform (rot90 by `k·90°`, an optional flip, an integer circular shift of up to ±3
voxels per axis) is drawn per sample and applied identically to every image of that sample
**before** the low-resolution input is made. There is no intensity augmentation. (The authors'
code also flips the 3 MRI sub-slices; mrsisr's MRIs live on the MRSI grid with one slice, so that
step does not apply.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_SHIFT = 3
"""Largest circular shift in voxels (each axis)."""


@dataclass(frozen=True)
class Transform:
    """One rigid grid transform.

    Attributes:
        k: Number of 90° rotations (0-3), `np.rot90` on the last two axes.
        flip: Flip the last axis after the rotation.
        shift: Circular shift `(rows, cols)` in voxels applied last (`np.roll`).
    """

    k: int = 0
    flip: bool = False
    shift: tuple[int, int] = (0, 0)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Apply the transform to the last two axes of `x`.

        Args:
            x: Image(s) `(..., H, W)` (bool or float).

        Returns:
            The transformed copy, same shape for square images.
        """
        y = np.rot90(x, self.k, axes=(-2, -1))
        if self.flip:
            y = y[..., ::-1]
        if self.shift != (0, 0):
            y = np.roll(y, self.shift, axis=(-2, -1))
        return np.ascontiguousarray(y)


def random_transform(rng: np.random.Generator, max_shift: int = MAX_SHIFT) -> Transform:
    """Draw a transform: `k ~ U{0..3}`, flip with p = 0.5, shifts `~ U{-max_shift..max_shift}`.

    Args:
        rng: Random generator.
        max_shift: Largest shift in voxels.

    Returns:
        The drawn transform.
    """
    k = int(rng.integers(0, 4))
    flip = bool(rng.random() < 0.5)
    shift = tuple(int(v) for v in rng.integers(-max_shift, max_shift + 1, size=2))
    return Transform(k=k, flip=flip, shift=shift)


def augment(
    images: dict[str, np.ndarray], rng: np.random.Generator, max_shift: int = MAX_SHIFT
) -> tuple[dict[str, np.ndarray], Transform]:
    """Apply one random transform jointly to several images of one sample.

    Args:
        images: Name -> image `(H, W)` (map, mask, T1, FLAIR, ...), all the same shape.
        rng: Random generator.
        max_shift: Largest shift in voxels.

    Returns:
        The transformed images (same keys) and the transform used.
    """
    t = random_transform(rng, max_shift)
    return {name: t(img) for name, img in images.items()}, t
