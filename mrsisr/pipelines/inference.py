"""Super-resolve one map given as arrays, with the conventions of training, in one call.

[`super_resolve_map`][mrsisr.pipelines.inference.super_resolve_map] (also `pipe.super_resolve`)
takes a low-resolution map at its acquired matrix (`L×L`, zero-filled in k-space to 64×64) or on
the 64×64 grid (with `scale`), normalises it, samples the pipeline and scales the answer back.
[`resolve_scale`][mrsisr.pipelines.inference.resolve_scale] and
[`check_scale`][mrsisr.pipelines.inference.check_scale] turn `--scale` and a map's matrix into
one checked factor. The subject-level command on NIfTI volumes is [`mrsisr.sr`][mrsisr.sr].
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from mrsisr.data import METABOLITES, kspace_lowres
from mrsisr.data.degrade import _check_size, nearest_native_index, zero_fill
from mrsisr.data.nifti import MAX_PHASE_ASYMMETRY
from mrsisr.errors import DataError, MrsisrError
from mrsisr.kspace import real_phase
from mrsisr.types import Condition

__all__ = ["check_scale", "resolve_scale", "super_resolve_map", "uses_mri"]


def resolve_scale(scale: float | None, native_size: int | None, where: str = "input") -> float:
    """The upscaling factor from `--scale` and the maps' acquired matrix, which must agree.

    Args:
        scale: The factor asked for, or `None`.
        native_size: In-plane matrix `L` of maps read at their acquired resolution, or `None`
            for maps given on the 64×64 grid.
        where: What to name in messages (the subject).

    Returns:
        The factor: `scale`, or `64 / L` when `scale` is `None`.

    Raises:
        DataError: If neither is known, or they disagree.
    """
    if native_size:
        implied = 64 / int(native_size)
        if scale is not None and abs(check_scale(scale) - implied) > 1e-9:
            raise DataError(
                f"{where}: the maps are {native_size}×{native_size}, i.e. ×{implied:g}, not "
                f"`scale` {scale:g}; drop `scale` or pass {implied:g}"
            )
        return implied
    if scale is None:
        raise DataError(
            f"{where}: the maps are on the 64×64 grid, so their acquired matrix is unknown; pass "
            "`scale` (64 / acquired matrix, e.g. 4 for 16×16)"
        )
    return check_scale(scale)


def check_scale(scale: float) -> float:
    """Check an upscaling factor before any work: finite, positive, `64 / scale` a whole size.

    Args:
        scale: The factor (`--scale`).

    Returns:
        The factor as a float.

    Raises:
        DataError: With one line saying which values work.
    """
    try:
        value = float(scale)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or value < 1:
        raise DataError(
            f"`scale` {scale}: must be a finite factor of at least 1, such as 2, 4 or 8"
        )
    lr_size = 64 / value
    if abs(lr_size - round(lr_size)) > 1e-9:
        raise DataError(
            f"`scale` {scale}: 64 / scale must be a whole matrix size such as 8, 16, 32"
        )
    return value


def uses_mri(pipeline: Any) -> bool:
    """Whether a pipeline's networks read T1 and FLAIR.

    Networks declare it with a boolean `use_mri` (UNets, discriminators) or `mri` (flows); a
    pipeline none of whose parts declares it (MUNet) is taken to read them.

    Args:
        pipeline: A built pipeline.

    Returns:
        `False` only when every part that declares it says no.
    """
    parts = [p for p, _ in pipeline.parts().values() if isinstance(p, torch.nn.Module)]
    flags = [
        value
        for m in (m for part in parts for m in part.modules())
        for value in (getattr(m, "use_mri", None), getattr(m, "mri", None))
        if isinstance(value, bool)
    ]
    return any(flags) if flags else True


def _grid_map(name: str, a: Any, native: int | None) -> np.ndarray:
    """A 2-D input as a float array on the 64 grid (nearest-voxel upsampling from `native`)."""
    arr = np.asarray(a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else a)
    if arr.ndim != 2:
        raise DataError(f"{name}: expected one 2-D map, got shape {arr.shape}")
    if arr.shape == (64, 64):
        return arr
    if native is not None and arr.shape == (native, native):
        up = nearest_native_index(native)
        return arr[up][:, up]
    raise DataError(
        f"{name}: shape {arr.shape}; give it on the 64×64 grid or on the map's "
        f"{native}×{native} grid"
        if native
        else f"{name}: shape {arr.shape}; give it on 64×64"
    )


def super_resolve_map(
    pipeline: Any,
    lr: Any,
    *,
    t1: Any = None,
    flair: Any = None,
    mask: Any = None,
    scale: float | None = None,
    samples: int = 4,
    seed: int = 0,
    metabolite: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Super-resolve one 2-D map given as arrays: the conventions of training, in one call.

    `lr` is the low-resolution map either at its acquired matrix (`L×L`, real or complex; it is
    zero-filled in k-space to 64×64 and the scale is `64 / L`) or on the 64×64 grid (then
    `scale` is required and the map is reduced to the central `64/scale` block of k-space, as
    in training). It is normalised by its maximum inside the mask, super-resolved and scaled
    back. T1 and FLAIR, on the 64×64 grid, are each divided by their maximum. A complex map at
    its acquired matrix is also handed on as the acquisition itself, rotated by its global phase
    (`Condition.measured`, see [`Subject.measured`][mrsisr.data.nifti.Subject]), so a pipeline
    with data consistency uses its k-space block as the data term.

    Args:
        pipeline: A ready pipeline (e.g. from [`mrsisr.load`][mrsisr.zoo.load]).
        lr: The low-resolution map, numpy array or tensor, `(L, L)` or `(64, 64)`.
        t1: T1 on the 64×64 grid; may be left out only for a model trained without MRIs.
        flair: FLAIR on the 64×64 grid, like `t1`.
        mask: Quality mask on the 64×64 or the `L×L` grid (default: where `lr` is non-zero).
        scale: Upscaling factor; inferred from an `L×L` map (and checked against it).
        samples: Samples to draw; the mean and the per-voxel std are returned.
        seed: Seed of the sampling noise.
        metabolite: The metabolite's name, for networks with a metabolite input.

    Returns:
        `(mean, std)`: float32 arrays `(64, 64)` in the units of `lr`, zero outside the mask.

    Raises:
        DataError: For a wrong shape, non-finite or negative values, a scale that disagrees
            with the map's matrix, or missing MRIs for a model that reads them.

    Examples:
        >>> import numpy as np, mrsisr
        >>> from mrsisr.recipes import load_recipe
        >>> pipe = load_recipe("munet_fs_cwgan", size="tiny").build().eval()
        >>> lr16 = np.random.default_rng(0).random((16, 16))
        >>> mean, std = pipe.super_resolve(lr16, t1=np.ones((64, 64)), flair=np.ones((64, 64)))
        >>> mean.shape, std.shape
        ((64, 64), (64, 64))
    """
    if samples < 1:
        raise MrsisrError(f"samples must be at least 1, got {samples}")
    arr = np.asarray(lr.detach().cpu().numpy() if isinstance(lr, torch.Tensor) else lr)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise DataError(f"lr: expected a square 2-D map, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or (not np.iscomplexobj(arr) and (arr < 0).any()):
        raise DataError("lr: values must be finite and non-negative (0 marks excluded voxels)")
    native = int(arr.shape[0]) if arr.shape != (64, 64) else None
    acquired = None
    if native is not None:
        _check_size(native, 64)
        mask64 = _grid_map("mask", mask if mask is not None else arr != 0, native) > 0
        filled = zero_fill(arr, magnitude=False)
        grid = np.abs(filled).astype(np.float32)
        if np.iscomplexobj(arr):  # the acquisition with its phase: consistency's data term
            acquired, asym = real_phase(filled, native)
            if asym > MAX_PHASE_ASYMMETRY:
                acquired = None  # a phase that varies across the image: magnitude only
    else:
        if np.iscomplexobj(arr):
            raise DataError("lr: complex maps are taken at their acquired matrix only")
        mask64 = _grid_map("mask", mask if mask is not None else arr != 0, None) > 0
        grid = arr.astype(np.float32)
    scale = resolve_scale(scale, native, "lr")
    hr = grid * mask64
    top = float(hr.max())
    if not top > 0:
        raise DataError("lr: the map is zero inside its mask; nothing to super-resolve")
    low = kspace_lowres(hr / top, int(round(64 / scale))) if native is None else hr / top
    mris = {}
    for name, img in (("t1", t1), ("flair", flair)):
        if img is None:
            if uses_mri(pipeline):
                raise DataError(
                    f"{name}: this model reads T1 and FLAIR; pass both (on the 64×64 grid) or "
                    "use a recipe trained without MRIs"
                )
            mris[name] = np.zeros((64, 64), np.float32)
            continue
        a = _grid_map(name, img, None).astype(np.float32)
        mris[name] = a / a.max() if a.max() > 0 else a
    device = next((p.device for p in pipeline.parameters()), torch.device("cpu"))
    as_t = lambda a: torch.as_tensor(np.asarray(a, np.float32)).view(1, 1, 64, 64)  # noqa: E731
    met = None if metabolite is None else torch.tensor([METABOLITES.index(metabolite)])
    cond = Condition(
        mask=as_t(mask64),
        lr=as_t(low),
        t1=as_t(mris["t1"]),
        flair=as_t(mris["flair"]),
        scale=torch.tensor([float(scale)]),
        metabolite=met,
        measured=None if acquired is None else torch.from_numpy(acquired / top).view(1, 1, 64, 64),
    ).to(device)
    gen = torch.Generator(device=device).manual_seed(int(seed))
    with torch.no_grad():
        x = pipeline.sample(cond.repeat(samples), generator=gen).float().cpu()
    x = x[:, 0] * torch.as_tensor(mask64, dtype=torch.float32)
    mean = (x.mean(0) * top).numpy().astype(np.float32)
    std = (x.std(0, unbiased=False) * top).numpy().astype(np.float32)
    return mean, std
