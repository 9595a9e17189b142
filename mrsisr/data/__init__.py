"""Data: the phantom cohort, loaders and checks for real data, degradation, splits and datasets.

The public API, re-exported here:

- [`kspace_lowres`][mrsisr.data.degrade.kspace_lowres], `upscale_factor`, `LR_SIZES`: the
  low-resolution input (SPEC §1).
- `METABOLITES`, [`Subject`][mrsisr.data.nifti.Subject], `load_subject`, `load_dataset`,
  `check_subject_dir`, `check_dataset`: real data (NIfTI or the authors' numpy layout).
- `make_phantom_cohort`, `phantom_cohort`: the built-in digital glioma phantom cohort.
- `fold_split`: patient-wise 5-fold splits.
- [`MRSIDataset`][mrsisr.data.dataset.MRSIDataset], `collate`, `MetaboliteBatchSampler`: torch
  datasets producing [`Batch`][mrsisr.types.Batch] objects.
"""

from typing import Any

from mrsisr.data.degrade import LR_SIZES, kspace_lowres, kspace_truncate, upscale_factor
from mrsisr.data.layout import write_nifti
from mrsisr.data.nifti import (
    METABOLITES,
    Subject,
    check_dataset,
    check_subject_dir,
    load_dataset,
    load_subject,
)
from mrsisr.data.splits import fold_split
from mrsisr.data.transforms import Transform, augment, random_transform

__all__ = [
    "LR_SIZES",
    "METABOLITES",
    "MRSIDataset",
    "MapSample",
    "MetaboliteBatchSampler",
    "Subject",
    "Transform",
    "augment",
    "check_dataset",
    "check_subject_dir",
    "collate",
    "fold_split",
    "kspace_lowres",
    "kspace_truncate",
    "load_dataset",
    "load_subject",
    "make_phantom_cohort",
    "phantom_cohort",
    "random_transform",
    "upscale_factor",
    "write_nifti",
]

# torch (dataset) and scipy-heavy phantom code are imported on first use, so `mrsisr data check`
# and other light paths stay fast.
_LAZY = {
    "MRSIDataset": "mrsisr.data.dataset",
    "MapSample": "mrsisr.data.dataset",
    "MetaboliteBatchSampler": "mrsisr.data.dataset",
    "collate": "mrsisr.data.dataset",
    "make_phantom_cohort": "mrsisr.data.phantom",
    "phantom_cohort": "mrsisr.data.phantom",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mrsisr.data' has no attribute {name!r}")
