"""Patient-wise cross-validation folds (SPEC §1), and the datasets of a fold.

Subject ids are sorted and cut into `n_folds` contiguous groups (sizes differ by at most one).
Fold `i`: test = group `i`, validation = group `(i + 1) mod n_folds`, train = the rest. With 25
subjects this gives 15 / 5 / 5, and every subject is tested exactly once over the 5 folds.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from mrsisr.errors import DataError


def fold_groups(subject_ids: Iterable[str], n_folds: int = 5) -> list[list[str]]:
    """Cut the sorted subject ids into `n_folds` contiguous groups.

    Args:
        subject_ids: Subject identifiers (unique).
        n_folds: Number of groups, at least 3 (test, validation and training each need one).

    Returns:
        The groups, in order.
    """
    ids = sorted(subject_ids)
    if len(set(ids)) != len(ids):
        raise DataError("fold split: subject ids must be unique; rename duplicated subject folders")
    if n_folds < 3:
        raise DataError(f"fold split: n_folds = {n_folds}; use at least 3 (test, val, train)")
    if len(ids) < n_folds:
        raise DataError(
            f"fold split: {len(ids)} subjects cannot fill {n_folds} folds; add subjects or "
            "lower n_folds"
        )
    return [list(g) for g in np.array_split(np.array(ids, dtype=object), n_folds)]


def fold_split(
    subject_ids: Iterable[str], fold: int, n_folds: int = 5
) -> tuple[list[str], list[str], list[str]]:
    """Train, validation and test subjects of one fold.

    Args:
        subject_ids: Subject identifiers (unique).
        fold: Fold index `i` in `0 … n_folds-1`.
        n_folds: Number of folds.

    Returns:
        `(train, val, test)` lists of subject ids, each sorted.

    Examples:
        >>> from mrsisr.data import fold_split
        >>> train, val, test = fold_split([f"sub-{i:02d}" for i in range(1, 26)], fold=0)
        >>> len(train), val[0], test
        (15, 'sub-06', ['sub-01', 'sub-02', 'sub-03', 'sub-04', 'sub-05'])
    """
    groups = fold_groups(subject_ids, n_folds)
    if isinstance(fold, bool) or not 0 <= int(fold) < n_folds or int(fold) != fold:
        raise DataError(f"fold {fold!r}: use an integer from 0 to {n_folds - 1}")
    fold = int(fold)
    test = groups[fold]
    val = groups[(fold + 1) % n_folds]
    train = sorted(
        s for i, g in enumerate(groups) if i not in (fold, (fold + 1) % n_folds) for s in g
    )
    return train, list(val), list(test)


def resolve_data(
    data: str | os.PathLike[str], *, phantom_seed: int = 0, phantom_subjects: int = 25
) -> Path:
    """Turn `phantom` or a folder into a dataset folder in the real-data layout.

    Args:
        data: `"phantom"` for the built-in cohort (built once into the cache), or a folder of
            subject folders.
        phantom_seed: Seed of the phantom cohort.
        phantom_subjects: Number of phantom subjects.

    Returns:
        The dataset folder.

    Raises:
        DataError: If the folder does not exist.
    """
    if str(data) == "phantom":
        from mrsisr.data.phantom import phantom_cohort

        return phantom_cohort(seed=phantom_seed, subjects=phantom_subjects)
    path = Path(data)
    if not path.is_dir():
        raise DataError(
            f"{path}: data folder not found; give a folder of subject folders or 'phantom'"
        )
    return path


def fold_datasets(
    data_dir: str | os.PathLike[str], fold: int, seed: int = 0, metabolites: Any = None
) -> tuple[Any, Any, list[str]]:
    """Build the training and validation datasets of one fold, and list its test subjects.

    Args:
        data_dir: Dataset folder.
        fold: Fold index (test = group `fold`, validation = group `fold + 1`).
        seed: Seed of augmentation and low-resolution draws.
        metabolites: Metabolites to use (`None`: all seven).

    Returns:
        `(train_set, val_set, test_ids)`; the training set is augmented.
    """
    from mrsisr.constants import METABOLITES
    from mrsisr.data.dataset import MRSIDataset
    from mrsisr.data.nifti import load_dataset

    subjects = load_dataset(data_dir)
    ids = [s.subject for s in subjects]
    train_ids, val_ids, test_ids = fold_split(ids, fold)
    mets = tuple(metabolites) if metabolites else METABOLITES
    train = MRSIDataset(subjects, metabolites=mets, augment=True, seed=seed, subject_ids=train_ids)
    val = (
        MRSIDataset(subjects, metabolites=mets, augment=False, seed=seed, subject_ids=val_ids)
        if val_ids
        else None
    )
    return train, val, list(test_ids)
