"""The authors' numpy layout: `Met_filtered/<met>.npy` maps and `MRI_sliced/` T1 and FLAIR.

Maps are `(S, 64, 64)`; the MRIs `(3S, 192, 192)` (three MRI slices per MRSI slice, 3× finer in
plane), averaged down to the MRSI grid. The layout carries no affine, so the nominal
3.4375×3.4375×3.41 mm grid ([`MRSI_VOXEL_MM`][mrsisr.data.nifti.MRSI_VOXEL_MM]) is assumed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mrsisr.data.layout import ALIASES, _fmt, _stem
from mrsisr.data.nifti import GRID, MRSI_VOXEL_MM, Subject, _check_values

__all__: list[str] = []


def _block_mean(a: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    f = [a.shape[i] // shape[i] for i in range(3)]
    return a.reshape(shape[0], f[0], shape[1], f[1], shape[2], f[2]).mean(axis=(1, 3, 5))


def _read_numpy_subject(d: Path, want_data: bool) -> tuple[Subject | None, list[str]]:
    problems: list[str] = []
    met_dir = d / "Met_filtered"
    maps: dict[str, np.ndarray] = {}
    ref_shape = None
    for p in sorted(met_dir.glob("*.npy")):
        m = ALIASES.get(_stem(p).lower())
        if m is None:
            continue
        if m in maps:
            problems.append(f"{_fmt(p)}: a second file for {m}; keep one")
            continue
        try:
            data = np.load(p, allow_pickle=False).astype(np.float32)
        except Exception as e:
            problems.append(
                f"{_fmt(p)}: cannot be read ({type(e).__name__}: {e}); re-save with numpy"
            )
            continue
        if data.ndim != 3 or data.shape[1:] != (GRID, GRID):
            problems.append(
                f"{_fmt(p)}: shape {data.shape}; the authors' layout stores (slices, 64, 64)"
            )
            continue
        if ref_shape is not None and data.shape != ref_shape:
            problems.append(
                f"{_fmt(p)}: shape {data.shape} differs from the other maps {ref_shape}"
            )
            continue
        ref_shape = data.shape
        if _check_values(p, data, problems, "map"):
            maps[m] = data
    if not maps and ref_shape is None:
        problems.append(
            f"{_fmt(met_dir)}: no metabolite .npy files found; expected names like Cr+PCr.npy, "
            "GPC+PCh.npy, NAA.npy"
        )
    masks = {m: a != 0 for m, a in maps.items()}
    for m, mm in masks.items():
        if not mm.any():
            problems.append(f"{_fmt(met_dir)}/{m}: empty mask (map is zero everywhere); remove it")
    mris: dict[str, np.ndarray] = {}
    for role, fname in (("t1", "T1_sliced.npy"), ("flair", "flair_sliced.npy")):
        cands = [
            p for p in sorted((d / "MRI_sliced").glob("*.npy")) if p.name.lower() == fname.lower()
        ]
        if not cands:
            problems.append(
                f"{_fmt(d / 'MRI_sliced' / fname)}: missing; add it (shape (3S, 192, 192))"
            )
            continue
        p = cands[0]
        try:
            data = np.load(p, allow_pickle=False).astype(np.float32)
        except Exception as e:
            problems.append(
                f"{_fmt(p)}: cannot be read ({type(e).__name__}: {e}); re-save with numpy"
            )
            continue
        if ref_shape is None:
            continue
        s = ref_shape[0]
        if (
            data.ndim != 3
            or data.shape[0] % s
            or data.shape[1] % GRID
            or data.shape[2] % GRID
            or data.shape[1] != data.shape[2]
        ):
            problems.append(
                f"{_fmt(p)}: shape {data.shape} is not a multiple of the maps' {ref_shape}; "
                "expected (3S, 192, 192)"
            )
            continue
        if not np.all(np.isfinite(data)):
            problems.append(f"{_fmt(p)}: non-finite (NaN/inf) voxels; fix the export")
            continue
        mris[role] = _block_mean(data, ref_shape).astype(np.float32)
    if problems or not want_data:
        return None, problems
    sub = Subject(
        subject=d.name,
        maps={m: (a * masks[m]).astype(np.float32) for m, a in maps.items()},
        masks=masks,
        t1=mris["t1"],
        flair=mris["flair"],
        affine=np.diag([*MRSI_VOXEL_MM, 1.0]),
        shape=tuple(ref_shape),
    )
    return sub, problems
