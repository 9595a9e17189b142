"""Read and check subject folders: the NIfTI layout and the authors' numpy layout.

NIfTI layout (one folder per subject, the folder name is the subject id)::

    DATASET/
      sub-01/
        tCr.nii.gz  tCho.nii.gz  NAA.nii.gz  Glu.nii.gz  Ins.nii.gz  Gln.nii.gz  Gly.nii.gz
        mask.nii.gz        # optional quality mask (else: map != 0, per metabolite)
        T1.nii.gz          # co-registered T1, any grid covering the MRSI slab
        FLAIR.nii.gz       # co-registered FLAIR, any grid covering the MRSI slab
        diagnostics/       # optional, ignored by the loader
      sub-02/ ...

BIDS-like names work too: `sub-01_NAA.nii.gz`, `sub-01_ses-1_T1w.nii.gz`, `sub-01_FLAIR.nii.gz`,
`sub-01_mask.nii.gz` (the part after the last `_` names the role). Maps may also be given at
their acquired matrix (an even square `L×L` below 64, real or complex): they are zero-filled in
k-space to 64×64 on loading.

Metabolite maps are 3-D `(64, 64, S)` volumes that share one affine (the MRSI grid); `.nii` or
`.nii.gz`; names are matched case-insensitively and the authors' names (`Cr+PCr`, `GPC+PCh`, ...)
are accepted as aliases. T1 and FLAIR are resampled onto the MRSI grid by averaging each MRSI
voxel's footprint (in world coordinates, so any orientation and resolution works).

The authors' numpy layout (`Met_filtered/<met>.npy` of shape `(S, 64, 64)` and
`MRI_sliced/{T1,flair}_sliced.npy` of shape `(3S, 192, 192)`) is read too; it carries no
affine, so the nominal 3.4375×3.4375×3.41 mm grid is assumed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mrsisr.constants import METABOLITES
from mrsisr.data.degrade import nearest_native_index, zero_fill, zero_fill_affine
from mrsisr.data.layout import (
    _broken_entries,
    _find_files,
    _fmt,
    _nifti_named,
    subject_dirs,
)
from mrsisr.data.resample import resample_to_grid
from mrsisr.errors import DataError
from mrsisr.kspace import real_phase

GRID = 64
MRSI_VOXEL_MM = (3.4375, 3.4375, 3.41)
"""Nominal MRSI voxel size (mm) used when a layout carries no affine (the numpy layout)."""
AFFINE_TOL_MM = 1e-3
MAX_PHASE_ASYMMETRY = 0.1
"""Largest k-space asymmetry ([`real_phase`][mrsisr.kspace.real_phase]) of a complex map, after
its global phase is removed, for which its phase is used as the acquisition's: a phase that
varies by about ±0.3 rad across the image already exceeds it."""


@dataclass
class Subject:
    """One subject's maps, masks and MRIs on the MRSI grid.

    Attributes:
        subject: Subject id (the folder name).
        maps: Metabolite name -> float32 map `(S, 64, 64)`, zero outside its mask.
        masks: Metabolite name -> bool mask `(S, 64, 64)` (`map != 0`, and inside `mask.nii.gz`).
        t1: T1 resampled onto the MRSI grid, float32 `(S, 64, 64)`.
        flair: FLAIR resampled onto the MRSI grid, float32 `(S, 64, 64)`.
        affine: 4×4 voxel-to-world affine of the MRSI grid (NIfTI index order `(x, y, slice)`).
        shape: `(S, 64, 64)`.
        native_size: In-plane matrix `L` of maps read at their acquired resolution and
            zero-filled to 64×64 (`None` for maps given on the 64×64 grid); the upscaling factor
            is then `64 / L`.
        header: The NIfTI header of the first metabolite map (codes, units, descrip), kept for
            the outputs; `None` for the numpy layout.
        measured: Metabolite name -> the acquisition itself, for **complex** maps read at
            their acquired matrix: the complex64 zero-filled image `(S, 64, 64)` (not masked),
            rotated per slice by its global phase ([`real_phase`][mrsisr.kspace.real_phase]),
            whose central `L×L` k-space block is the acquired one. Data consistency
            ([`KSpaceConsistency`][mrsisr.consistency.KSpaceConsistency]) uses this block as
            its data term instead of estimating one from the magnitude. Left out for real maps
            (taken as magnitudes, whose phase is lost), maps on the 64×64 grid, and complex
            maps whose phase varies across the image (see `notes`).
        notes: What the loader decided that the user should hear (e.g. a complex map whose
            phase could not be used); printed by `mrsisr sr`.
    """

    subject: str
    maps: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    t1: np.ndarray
    flair: np.ndarray
    affine: np.ndarray = field(default_factory=lambda: np.diag([*MRSI_VOXEL_MM, 1.0]))
    shape: tuple[int, int, int] = (0, GRID, GRID)
    native_size: int | None = None
    header: Any = None
    measured: dict[str, np.ndarray] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def metabolites(self) -> tuple[str, ...]:
        """Metabolites present, in the canonical order."""
        return tuple(m for m in METABOLITES if m in self.maps)

    @property
    def n_slices(self) -> int:
        """Number of slices `S`."""
        return int(self.shape[0])


# --------------------------------------------------------------------------------------------
# resampling


# --------------------------------------------------------------------------------------------
# reading + checking in one pass


def _load_nifti(p: Path, problems: list[str], headers: dict[Path, Any] | None = None):
    import nibabel as nib

    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # nibabel warns about odd headers; we check below
            img = nib.load(str(p))
            raw = np.asarray(img.dataobj)
            # complex data (a map's truncated image, with its phase) is kept for zero-filling
            data = raw.astype(np.complex128 if np.iscomplexobj(raw) else np.float32)
            affine = np.asarray(img.affine, dtype=np.float64)
            if headers is not None:
                headers[p] = img.header.copy()
    except Exception as e:  # nibabel raises many types for bad files
        problems.append(
            f"{_fmt(p)}: cannot be read as NIfTI ({type(e).__name__}: {e}); re-export it"
        )
        return None, None
    if not np.isfinite(affine).all():
        problems.append(
            f"{_fmt(p)}: the header's affine has NaN or infinite entries; fix the header"
        )
        return None, None
    if abs(float(np.linalg.det(affine[:3, :3]))) < 1e-12:
        problems.append(
            f"{_fmt(p)}: the header's affine is singular (zero voxel size); fix the header"
        )
        return None, None
    return data, affine


def _check_values(p: Path, data: np.ndarray, problems: list[str], what: str) -> bool:
    ok = True
    bad = ~np.isfinite(data)
    if bad.any():
        problems.append(
            f"{_fmt(p)}: {int(bad.sum())} non-finite (NaN/inf) voxels; set them to 0 (excluded) "
            f"and re-export the {what}"
        )
        ok = False
    neg = np.isfinite(data) & (data < 0)
    if neg.any():
        problems.append(
            f"{_fmt(p)}: {int(neg.sum())} negative voxels (min {float(data[neg].min()):.3g}); "
            f"{what}s must be non-negative, set them to 0 or fix the fit"
        )
        ok = False
    return ok


def _as_3d(p: Path, data: np.ndarray, problems: list[str], what: str) -> np.ndarray | None:
    if data.ndim == 2:
        return data[:, :, None]
    if data.ndim != 3:
        problems.append(
            f"{_fmt(p)}: {what} is {data.ndim}-D with shape {data.shape}; save one 3-D volume "
            "(x, y, slices)"
        )
        return None
    return data


def _read_mask(
    p: Path,
    ref_file: Path,
    ref_shape: tuple,
    ref_affine: np.ndarray,
    problems: list[str],
    native: tuple[tuple, np.ndarray] | None = None,
) -> np.ndarray | None:
    data, aff = _load_nifti(p, problems)
    if data is None:
        return None
    data = _as_3d(p, data, problems, "the mask")
    if data is None:
        return None
    if (
        native is not None
        and data.shape == native[0]
        and np.allclose(aff, native[1], atol=AFFINE_TOL_MM)
    ):  # a mask on the maps' acquired grid: each voxel covers its fine voxels
        up = nearest_native_index(int(native[0][0]))
        data = data[up][:, up]
        aff = ref_affine
    if data.shape != ref_shape:
        msg = f"shape {data.shape} differs from the maps {ref_shape}; save it on the MRSI grid"
    elif not np.allclose(aff, ref_affine, atol=AFFINE_TOL_MM):
        msg = f"affine differs from {ref_file.name}; save the mask on the MRSI grid"
    elif not np.all(np.isfinite(data)):
        msg = "non-finite values; save a 0/1 mask"
    elif not (data > 0).any():
        msg = "mask is empty (no voxel > 0); fix the quality filter or delete it to use map != 0"
    else:
        return data > 0
    problems.append(f"{_fmt(p)}: {msg}")
    return None


def _read_nifti_subject(
    d: Path, want_data: bool, require_mri: bool = True
) -> tuple[Subject | None, list[str]]:
    problems: list[str] = _broken_entries(d)
    files, dups = _find_files(d)
    for role, ps in dups.items():
        problems.append(
            f"{_fmt(d)}: several files for {role} ({', '.join(p.name for p in ps)}); keep one"
        )
    mets = [m for m in METABOLITES if m in files]
    if not mets:
        problems.append(
            f"{_fmt(d)}: no metabolite maps found; name them {', '.join(METABOLITES)} "
            "(.nii or .nii.gz)"
        )
        return None, problems
    ref_affine: np.ndarray | None = None
    ref_shape: tuple[int, ...] | None = None
    ref_file: Path | None = None
    maps: dict[str, np.ndarray] = {}
    headers: dict[Path, Any] = {}
    for m in mets:
        p = files[m]
        data, aff = _load_nifti(p, problems, headers)
        if data is None:
            continue
        data = _as_3d(p, data, problems, "the map")
        if data is None:
            continue
        nx, ny = data.shape[:2]
        if np.iscomplexobj(data) and (nx, ny) == (GRID, GRID):
            problems.append(
                f"{_fmt(p)}: complex map on the {GRID}×{GRID} grid; complex data is read at the "
                "acquired matrix only (give the magnitude on this grid)"
            )
            continue
        if (nx, ny) != (GRID, GRID) and (nx != ny or nx % 2 or not 2 <= nx < GRID):
            problems.append(
                f"{_fmt(p)}: in-plane matrix is {nx}×{ny}; give the maps on the {GRID}×{GRID} "
                f"MRSI grid or at their acquired square matrix (an even size below {GRID}, "
                "e.g. 16×16)"
            )
            continue
        if ref_affine is None:
            ref_affine, ref_shape, ref_file = aff, data.shape, p
        else:
            if data.shape != ref_shape:
                problems.append(
                    f"{_fmt(p)}: shape {data.shape} differs from {ref_file.name} {ref_shape}; "
                    "all maps must share one grid"
                )
                continue
            if not np.allclose(aff, ref_affine, atol=AFFINE_TOL_MM):
                diff = float(np.abs(aff - ref_affine).max())
                problems.append(
                    f"{_fmt(p)}: affine differs from {ref_file.name} (max difference "
                    f"{diff:.3g} mm); all maps must share the MRSI grid, re-export them from "
                    "the same reconstruction"
                )
                continue
        if not _check_values(p, np.abs(data) if np.iscomplexobj(data) else data, problems, "map"):
            continue
        maps[m] = data
    native: int | None = None
    native_grid: tuple[tuple, np.ndarray] | None = None
    measured: dict[str, np.ndarray] = {}
    notes: list[str] = []
    nonzero = {m: data != 0 for m, data in maps.items()}
    if ref_shape is not None and ref_shape[0] != GRID:
        # maps at their acquired matrix: zero-fill k-space to the 64 grid, as the protocol does
        native, native_grid = int(ref_shape[0]), (ref_shape, ref_affine)
        up = nearest_native_index(native)
        filled = {
            m: np.moveaxis(zero_fill(np.moveaxis(d, 2, 0), magnitude=False), 0, 2)
            for m, d in maps.items()
        }
        for m, raw in maps.items():  # complex input: the acquisition with its phase
            if np.iscomplexobj(raw):
                rotated, asym = real_phase(np.moveaxis(filled[m], 2, 0), native)
                if asym <= MAX_PHASE_ASYMMETRY:
                    measured[m] = np.moveaxis(rotated, 0, 2)
                else:
                    notes.append(
                        f"{_fmt(files[m])}: its phase varies across the image (k-space "
                        f"asymmetry {asym:.0%} after removing the global phase); only its "
                        "magnitude is used, and data consistency estimates the measured block "
                        "from it"
                    )
        maps = {m: np.abs(d).astype(np.float32) for m, d in filled.items()}
        nonzero = {m: nz[up][:, up] for m, nz in nonzero.items()}
        ref_affine = zero_fill_affine(ref_affine, native)
        ref_shape = (GRID, GRID, ref_shape[2])
    mask = None
    if "mask" in files and ref_affine is not None:
        mask = _read_mask(
            files["mask"],
            ref_file,
            ref_shape,
            ref_affine,
            problems,
            native=native_grid,
        )
    masks: dict[str, np.ndarray] = {}
    for m in maps:
        mm = nonzero[m]
        if mask is not None:
            mm &= mask
        if not mm.any():
            where = " inside mask.nii" if mask is not None else ""
            problems.append(
                f"{_fmt(files[m])}: empty mask (no non-zero voxel{where}); remove the map or fix "
                "the quality filter"
            )
        masks[m] = mm
    mris: dict[str, np.ndarray] = {}
    for role, label in (("t1", "T1"), ("flair", "FLAIR")):
        if role not in files:
            if require_mri:
                problems.append(
                    f"{_fmt(d)}: missing {label}; add {label}.nii.gz co-registered with the maps "
                    "(only a model trained without MRIs can do without)"
                )
            continue
        if ref_affine is None:
            continue
        p = files[role]
        data, aff = _load_nifti(p, problems)
        if data is None:
            continue
        data = _as_3d(p, data, problems, label)
        if data is None:
            continue
        if not np.all(np.isfinite(data)):
            problems.append(f"{_fmt(p)}: non-finite (NaN/inf) voxels; fix the {label} export")
            continue
        if np.abs(np.linalg.det(aff[:3, :3])) < 1e-9:
            problems.append(f"{_fmt(p)}: singular affine; fix the {label} header")
            continue
        res, outside = resample_to_grid(data, aff, ref_affine, ref_shape)
        if outside > 0.05:
            problems.append(
                f"{_fmt(p)}: covers only {100 * (1 - outside):.0f}% of the MRSI grid; co-register "
                f"{label} to the maps (world coordinates must overlap)"
            )
            continue
        if not (res > 0).any():
            problems.append(f"{_fmt(p)}: {label} is zero on the MRSI grid; check co-registration")
            continue
        mris[role] = res
    if problems or not want_data:
        return None, problems
    to_s = lambda a: np.ascontiguousarray(np.moveaxis(a, 2, 0))  # noqa: E731  (x, y, S) -> (S, x, y)
    sub = Subject(
        subject=d.name,
        maps={m: to_s(maps[m] * masks[m]).astype(np.float32) for m in maps},
        masks={m: to_s(masks[m]) for m in maps},
        t1=to_s(mris["t1"]) if "t1" in mris else np.zeros((ref_shape[2], GRID, GRID), np.float32),
        flair=(
            to_s(mris["flair"])
            if "flair" in mris
            else np.zeros((ref_shape[2], GRID, GRID), np.float32)
        ),
        affine=ref_affine,
        shape=(ref_shape[2], GRID, GRID),
        native_size=native,
        header=headers.get(ref_file),
        measured={m: to_s(measured[m]) for m in maps if m in measured},
        notes=notes,
    )
    return sub, problems


def _read_subject(
    path: str | Path, want_data: bool, require_mri: bool = True
) -> tuple[Subject | None, list[str]]:
    d = Path(path)
    if not d.is_dir():
        return None, [f"{_fmt(d)}: not a folder; pass a subject folder"]
    if (d / "Met_filtered").is_dir():
        from mrsisr.data.numpy_layout import _read_numpy_subject

        return _read_numpy_subject(d, want_data)
    return _read_nifti_subject(d, want_data, require_mri)


def check_subject_dir(path: str | Path, *, require_mri: bool = True) -> list[str]:
    """Validate one subject folder (either layout) without changing anything.

    Checks: maps are 3-D with a 64×64 in-plane matrix, share one shape and affine (to 1e-3 mm),
    are finite and non-negative; the mask (if any) is on the same grid and not empty; every map
    has a non-empty mask; T1 and FLAIR exist, are finite and cover the MRSI grid after
    resampling onto it.

    Args:
        path: A subject folder.
        require_mri: T1 and FLAIR must exist (`False` for a model trained without MRIs).

    Returns:
        One line per problem (naming the file and what to do); empty if the folder is usable.
    """
    return _read_subject(path, want_data=False, require_mri=require_mri)[1]


def check_dataset(path: str | Path) -> list[str]:
    """Validate a dataset folder (one sub-folder per subject) or a single subject folder.

    Args:
        path: The dataset (or subject) folder.

    Returns:
        One line per problem across all subjects; empty if every subject is usable.
    """
    d = Path(path)
    if not d.is_dir():
        return [f"{_fmt(d)}: not a folder; pass the dataset folder (one sub-folder per subject)"]
    dirs = subject_dirs(d)
    if not dirs and any(_nifti_named(p) for p in d.iterdir()):
        dirs = [d]  # a subject folder without maps: say so, not "no subject folders"
    if not dirs:
        return [f"{_fmt(d)}: no subject folders found; put each subject's maps in its own folder"]
    problems: list[str] = []
    for s in dirs:
        problems += check_subject_dir(s)
    return problems


def load_subject(path: str | Path, *, require_mri: bool = True) -> Subject:
    """Load one subject folder (NIfTI or the authors' numpy layout) onto the MRSI grid.

    Args:
        path: A subject folder.
        require_mri: T1 and FLAIR must exist; with `False` a missing one is zeros (for a model
            trained without MRIs, which never reads them).

    Returns:
        The [`Subject`][mrsisr.data.nifti.Subject] with maps zeroed outside their masks.

    Raises:
        DataError: The folder fails a check of
            [`check_subject_dir`][mrsisr.data.nifti.check_subject_dir] (the first problem is the
            message).
    """
    sub, problems = _read_subject(path, want_data=True, require_mri=require_mri)
    if problems:
        more = (
            f" (and {len(problems) - 1} more problems; run `mrsisr data check`)"
            if len(problems) > 1
            else ""
        )
        raise DataError(problems[0] + more)
    assert sub is not None
    return sub


def load_dataset(path: str | Path) -> list[Subject]:
    """Load every subject of a dataset folder, sorted by folder name.

    Args:
        path: A dataset folder (one sub-folder per subject) or a single subject folder.

    Returns:
        The subjects.

    Raises:
        DataError: A subject fails its checks, or no subject folder exists.
    """
    dirs = subject_dirs(path)
    if not dirs:
        raise DataError(f"{path}: no subject folders found; run `mrsisr data check {path}`")
    return [load_subject(d) for d in dirs]
