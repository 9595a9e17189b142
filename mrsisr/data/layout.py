"""Find a subject's files: which file is which metabolite, mask, T1 or FLAIR, and what is not used.

Names are matched case-insensitively on the file stem, or on the part after the last `_` for
BIDS-like names (`sub-01_NAA.nii.gz`, `sub-01_ses-1_T1w.nii.gz`); the authors' names
(`Cr+PCr`, `GPC+PCh`, ...) are aliases ([`ALIASES`][mrsisr.data.layout.ALIASES]). A subject folder
is one that holds at least one metabolite map (NIfTI) or the authors' `Met_filtered/` folder.
[`write_nifti`][mrsisr.data.layout.write_nifti] writes volumes in that layout.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Any

import numpy as np

from mrsisr.constants import METABOLITES

__all__ = ["ALIASES", "is_subject_dir", "subject_dirs", "subject_notes", "write_nifti"]


ALIASES: dict[str, str] = {
    **{m.lower(): m for m in METABOLITES},
    "cr+pcr": "tCr",
    "cr": "tCr",
    "gpc+pch": "tCho",
    "cho": "tCho",
    "naa+naag": "NAA",
    "tnaa": "NAA",
    "mi": "Ins",
    "myo-inositol": "Ins",
}
"""Lower-case file stems accepted for each metabolite (the authors' names included)."""


_T1_NAMES = ("t1", "t1w")


_FLAIR_NAMES = ("flair",)


_MASK_NAMES = ("mask",)


def _stem(p: Path) -> str:
    name = p.name
    for ext in (".nii.gz", ".nii", ".npy"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def _is_nifti(p: Path) -> bool:
    return p.is_file() and p.name.lower().endswith((".nii", ".nii.gz"))


def _role_of(p: Path) -> str | None:
    """The file's role: a metabolite, 'mask', 't1' or 'flair' (None: not used).

    Plain names (`NAA.nii.gz`, `T1.nii.gz`) and BIDS-like ones (`sub-01_NAA.nii.gz`,
    `sub-01_ses-2_T1w.nii.gz`, `sub-01_FLAIR.nii.gz`: the part after the last `_`) are accepted.
    """
    stem = _stem(p).lower()
    names = [stem]
    if stem.startswith("sub-") and "_" in stem:
        names.append(stem.rsplit("_", 1)[1])
    others = {
        **{n: "mask" for n in _MASK_NAMES},
        **{n: "t1" for n in _T1_NAMES},
        **{n: "flair" for n in _FLAIR_NAMES},
    }
    for s in names:
        role = ALIASES.get(s) or others.get(s)
        if role is not None:
            return role
    return None


def _nifti_named(p: Path) -> bool:
    return p.name.lower().endswith((".nii", ".nii.gz"))


def _find_files(d: Path) -> tuple[dict[str, Path], dict[str, list[Path]]]:
    """Map role -> file ('mask', 't1', 'flair', metabolite names) and role -> duplicates."""
    found: dict[str, list[Path]] = {}
    for p in sorted(d.iterdir()):
        if not _is_nifti(p):
            continue
        role = _role_of(p)
        if role is not None:
            found.setdefault(role, []).append(p)
    return {r: ps[0] for r, ps in found.items()}, {r: ps for r, ps in found.items() if len(ps) > 1}


def _broken_entries(d: Path) -> list[str]:
    """Problems for entries named like a map that are not readable files (a folder, a dangling
    symbolic link): skipping them silently would drop a map."""
    out = []
    for p in sorted(d.iterdir()):
        if _nifti_named(p) and not p.is_file():
            what = (
                "a folder"
                if p.is_dir()
                else "a broken symbolic link"
                if p.is_symlink()
                else "not a file"
            )
            out.append(
                f"{_fmt(p)}: is {what}, not a NIfTI file; replace it with the volume or remove it"
            )
    return out


def subject_notes(path: str | Path) -> list[str]:
    """Files of a subject folder that mrsisr will not use, one line each (not errors).

    A NIfTI file whose name is no metabolite, mask, T1 or FLAIR (e.g. `Lac.nii.gz`) is listed
    here so it is never skipped silently.

    Args:
        path: A subject folder.

    Returns:
        One line per unused file.
    """
    d = Path(path)
    if not d.is_dir():
        return []
    return [
        f"{_fmt(p)}: not used (not one of {', '.join(METABOLITES)}, mask, T1, FLAIR)"
        for p in sorted(d.iterdir())
        if _is_nifti(p) and _role_of(p) is None
    ]


def is_subject_dir(path: str | Path) -> bool:
    """Whether `path` looks like one subject (NIfTI maps or the authors' `Met_filtered/`).

    Args:
        path: A folder.

    Returns:
        True if it holds at least one recognised metabolite file.
    """
    d = Path(path)
    if not d.is_dir():
        return False
    if (d / "Met_filtered").is_dir():
        return True
    files, _ = _find_files(d)
    return any(m in files for m in METABOLITES)


def subject_dirs(path: str | Path) -> list[Path]:
    """Subject folders of a dataset folder (sorted), or `[path]` if it is itself a subject.

    Args:
        path: A dataset folder (one sub-folder per subject) or a subject folder.

    Returns:
        The subject folders.
    """
    d = Path(path)
    if is_subject_dir(d):
        return [d]
    if not d.is_dir():
        return []
    return [p for p in sorted(d.iterdir()) if p.is_dir() and not p.name.startswith((".", "_"))]


def _fmt(p: Path) -> str:
    return str(p)


def write_nifti(
    path: str | os.PathLike[str], data: np.ndarray, affine: np.ndarray, header: Any = None
) -> None:
    """Write a gzipped NIfTI-1 volume, byte-identical for identical input.

    Without `header` the header is fixed (units mm, qform and sform codes 1 from `affine`). With
    the source map's `header`, the output keeps its sform and qform codes, units, `descrip`,
    `dim_info` and intent, and takes `affine` (the output grid's) and float32 data. gzip stores
    no timestamp, so the same data give the same bytes.

    Args:
        path: Output file (`.nii.gz`).
        data: The volume, in NIfTI index order `(x, y, slice)`.
        affine: 4×4 voxel-to-world affine.
        header: A nibabel NIfTI header to carry over (e.g.
            [`Subject.header`][mrsisr.data.nifti.Subject]).
    """
    import nibabel as nib

    data = np.asarray(data, dtype=np.float32)
    if header is None:
        img = nib.Nifti1Image(data, affine)
        img.header.set_xyzt_units("mm", "sec")
        img.set_qform(affine, code=1)
        img.set_sform(affine, code=1)
    else:
        src = nib.Nifti1Header.from_header(header)
        s_code, q_code = int(src["sform_code"]), int(src["qform_code"])
        img = nib.Nifti1Image(data, affine, header=src)
        img.header.set_data_dtype(np.float32)
        img.header.set_slope_inter(None, None)
        img.set_qform(affine, code=q_code)
        img.set_sform(affine, code=s_code)
    Path(path).write_bytes(gzip.compress(img.to_bytes(), compresslevel=1, mtime=0))
