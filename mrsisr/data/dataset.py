"""A torch dataset of single 64×64 maps with their conditions, and batching helpers.

Each item is one (subject, metabolite, slice) map whose mask is not empty. The pipeline per item
follows the authors' training loader (SPEC §1):

1. take the high-resolution map (zero outside its mask), its mask, and the slice's T1 and FLAIR;
2. optionally augment all four jointly (rot90, flip, ±3-voxel circular shift);
3. divide the map by its own maximum (`max_value`), T1 and FLAIR by theirs;
4. draw the low-resolution matrix size `L` uniformly from `lr_sizes` (or use the fixed
   `lr_size`) and make the LR input with [`kspace_lowres`][mrsisr.data.degrade.kspace_lowres]
   from the masked, augmented, normalised map; `scale = 64 / L`.

Randomness is drawn from `np.random.default_rng([seed, epoch, index])`, so an item is the same
whichever worker loads it; call `set_epoch` to get new draws each epoch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from mrsisr.constants import METABOLITES
from mrsisr.data.degrade import LR_SIZES, _check_size, kspace_lowres, kspace_truncate
from mrsisr.data.nifti import Subject, load_dataset, load_subject
from mrsisr.data.transforms import augment as augment_images
from mrsisr.errors import DataError
from mrsisr.types import Batch, Condition


@dataclass
class MapSample:
    """One dataset item.

    Attributes:
        x0: Map divided by its maximum, `(1, 64, 64)` float32, zero outside the mask.
        mask: Quality mask `(1, 64, 64)` float32 (0/1).
        lr: Low-resolution map made from `x0`, `(1, 64, 64)` float32.
        t1: T1 divided by its maximum, `(1, 64, 64)` float32.
        flair: FLAIR divided by its maximum, `(1, 64, 64)` float32.
        scale: Upscaling factor `64 / L`.
        lr_size: Low-resolution matrix size `L`.
        max_value: The map's maximum in original units.
        metabolite: Metabolite name.
        subject: Subject id.
        slice_index: Slice index within the subject volume.
        measured: The acquisition with its phase, `(1, 64, 64)` complex64 on the scale of `lr`
            (see `MRSIDataset`'s `measured`), or `None`.
    """

    x0: torch.Tensor
    mask: torch.Tensor
    lr: torch.Tensor
    t1: torch.Tensor
    flair: torch.Tensor
    scale: float
    lr_size: int
    max_value: float
    metabolite: str
    subject: str
    slice_index: int
    measured: torch.Tensor | None = None


MEASURED_MODES = ("auto", "simulate", "none")
"""Where `MRSIDataset` takes each item's acquisition with its phase from (`measured`)."""


def _unit_max(a: np.ndarray) -> np.ndarray:
    m = float(a.max())
    return a / m if m > 0 else np.zeros_like(a)


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None]


class MRSIDataset(Dataset):
    """Single metabolite maps with their conditions, for training and evaluation.

    Args:
        subjects: Loaded subjects, subject folders, or one dataset folder.
        metabolites: Metabolites to include (those a subject lacks are skipped).
        lr_sizes: Low-resolution matrix sizes to draw `L` from, uniformly (training).
        augment: Apply the joint random rot90 / flip / shift augmentation.
        seed: Seed of the per-item random draws.
        lr_size: Fixed `L` for every item (deterministic evaluation, e.g. 16 for ×4); overrides
            `lr_sizes`.
        subject_ids: Keep only these subjects (e.g. one fold's training ids).
        measured: Attach the acquisition itself, with its phase, to each item (`measured`; the
            networks never read it, [data consistency][mrsisr.consistency.KSpaceConsistency]
            keeps its k-space block exactly). `"auto"`: the subject's own acquisition when its
            maps were read at their acquired matrix, the item's `L` is that matrix and there is
            no augmentation ([`Subject.measured`][mrsisr.data.nifti.Subject]); `"simulate"`:
            the complex k-space-truncated image of `x0` (the protocol's acquisition before its
            magnitude is taken, for studies of what the phase is worth); `"none"`: never.

    Raises:
        DataError: On unknown subjects or metabolites, a bad size or an unknown `measured`.

    Examples:
        >>> import numpy as np
        >>> from mrsisr.data import MRSIDataset, Subject
        >>> m = np.zeros((1, 64, 64), np.float32); m[0, 20:40, 20:40] = 2.0
        >>> sub = Subject("s1", {"NAA": m}, {"NAA": m > 0}, m + 1, m + 1, shape=(1, 64, 64))
        >>> item = MRSIDataset([sub], lr_size=16)[0]
        >>> item.scale, item.max_value, float(item.x0.max())
        (4.0, 2.0, 1.0)
    """

    def __init__(
        self,
        subjects: Sequence[Subject | str | Path] | str | Path,
        metabolites: Sequence[str] = METABOLITES,
        lr_sizes: Sequence[int] = LR_SIZES,
        augment: bool = False,
        seed: int = 0,
        lr_size: int | None = None,
        subject_ids: Sequence[str] | None = None,
        measured: str = "auto",
    ) -> None:
        if measured not in MEASURED_MODES:
            raise DataError(
                f"measured={measured!r}: choose one of {', '.join(map(repr, MEASURED_MODES))}"
            )
        if isinstance(subjects, (str, Path)):
            subs = load_dataset(subjects)
        else:
            subs = [s if isinstance(s, Subject) else load_subject(s) for s in subjects]
        if subject_ids is not None:
            keep = set(subject_ids)
            missing = keep - {s.subject for s in subs}
            if missing:
                raise DataError(f"subject ids not in the data: {', '.join(sorted(missing))}")
            subs = [s for s in subs if s.subject in keep]
        unknown = [m for m in metabolites if m not in METABOLITES]
        if unknown:
            raise DataError(f"unknown metabolites {unknown}; choose from {', '.join(METABOLITES)}")
        if lr_size is not None:
            _check_size(lr_size, 64)
        for size in lr_sizes:
            _check_size(size, 64)
        if not lr_sizes and lr_size is None:
            raise DataError("lr_sizes is empty; give at least one low-resolution size")
        self.subjects = subs
        self.metabolites = tuple(metabolites)
        self.lr_sizes = tuple(int(v) for v in lr_sizes)
        self.lr_size = None if lr_size is None else int(lr_size)
        self.augment = bool(augment)
        self.measured = measured
        self.seed = int(seed)
        self.epoch = 0
        self.items: list[tuple[int, str, int]] = []
        for si, s in enumerate(subs):
            for m in self.metabolites:
                if m not in s.maps:
                    continue
                nonempty = s.masks[m].reshape(s.masks[m].shape[0], -1).any(1)
                masked = s.maps[m] * s.masks[m]  # items are normalised by this map's maximum
                nonempty &= masked.reshape(masked.shape[0], -1).max(1) > 0
                self.items += [(si, m, int(k)) for k in np.flatnonzero(nonempty)]

    def set_epoch(self, epoch: int) -> None:
        """Change the random draws (augmentation and `L`) for a new epoch.

        Args:
            epoch: Epoch number.
        """
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.items)

    def metabolite_of(self, index: int) -> str:
        """Metabolite of item `index` (without loading it).

        Args:
            index: Item index.

        Returns:
            The metabolite name.
        """
        return self.items[index][1]

    def __getitem__(self, index: int) -> MapSample:
        si, met, k = self.items[index]
        s = self.subjects[si]
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        images = {
            "map": s.maps[met][k].astype(np.float32),
            "mask": s.masks[met][k],
            "t1": s.t1[k],
            "flair": s.flair[k],
        }
        if self.augment:
            images, _ = augment_images(images, rng)
        hr = images["map"] * images["mask"]
        max_value = float(hr.max())
        x0 = hr / max_value
        size = self.lr_size if self.lr_size is not None else int(rng.choice(self.lr_sizes))
        lr = kspace_lowres(x0, size)
        acquired = None
        if self.measured == "simulate":
            acquired = kspace_truncate(x0, size).astype(np.complex64)
        elif (
            self.measured == "auto"
            and not self.augment
            and met in s.measured
            and size == s.native_size
        ):
            acquired = s.measured[met][k] / np.float32(max_value)
        return MapSample(
            x0=_tensor(x0),
            mask=_tensor(images["mask"]),
            lr=_tensor(lr),
            t1=_tensor(_unit_max(images["t1"])),
            flair=_tensor(_unit_max(images["flair"])),
            scale=64.0 / size,
            lr_size=size,
            max_value=max_value,
            metabolite=met,
            subject=s.subject,
            slice_index=k,
            measured=None if acquired is None else torch.from_numpy(np.array(acquired))[None],
        )


def collate(items: Sequence[MapSample]) -> Batch:
    """Stack dataset items into a [`Batch`][mrsisr.types.Batch] (use as a DataLoader `collate_fn`).

    Args:
        items: Items from [`MRSIDataset`][mrsisr.data.dataset.MRSIDataset].

    Returns:
        The batch: `x0`, `cond.{mask, lr, t1, flair}` `(B, 1, 64, 64)`, `cond.scale` and
        `max_value` `(B,)` float32, `cond.metabolite` and `slice_index` `(B,)` int64;
        `cond.measured` `(B, 1, 64, 64)` complex64 when every item carries its acquisition.
    """
    if not items:
        raise DataError("collate got an empty list of items")

    def stack(name: str) -> torch.Tensor:
        return torch.stack([getattr(it, name) for it in items])

    cond = Condition(
        mask=stack("mask"),
        lr=stack("lr"),
        t1=stack("t1"),
        flair=stack("flair"),
        scale=torch.tensor([it.scale for it in items], dtype=torch.float32),
        metabolite=torch.tensor(
            [METABOLITES.index(it.metabolite) for it in items], dtype=torch.int64
        ),
        # the acquisition only when every item has it (else consistency estimates every block
        # from the magnitude, as for the protocol's maps)
        measured=stack("measured") if all(it.measured is not None for it in items) else None,
    )
    return Batch(
        x0=stack("x0"),
        cond=cond,
        max_value=torch.tensor([it.max_value for it in items], dtype=torch.float32),
        metabolite=[it.metabolite for it in items],
        subject=[it.subject for it in items],
        slice_index=torch.tensor([it.slice_index for it in items], dtype=torch.int64),
    )


class MetaboliteBatchSampler(Sampler[list[int]]):
    """Batches of item indices that each hold a single metabolite (the authors' `Met_Sampler`).

    Args:
        dataset: The dataset to batch.
        batch_size: Items per batch.
        shuffle: Shuffle items within each metabolite and the order of batches (per epoch).
        drop_last: Drop each metabolite's last incomplete batch.
        seed: Seed of the shuffling.
    """

    def __init__(
        self,
        dataset: MRSIDataset,
        batch_size: int,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
    ) -> None:
        if batch_size < 1:
            raise DataError(f"batch_size {batch_size}: use a positive integer")
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = int(seed)
        self.epoch = 0
        self.groups: dict[str, list[int]] = {}
        for i in range(len(dataset)):
            self.groups.setdefault(dataset.metabolite_of(i), []).append(i)

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for a new epoch.

        Args:
            epoch: Epoch number.
        """
        self.epoch = int(epoch)

    def _batches(self) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        batches: list[list[int]] = []
        for idx in self.groups.values():
            order = rng.permutation(idx).tolist() if self.shuffle else list(idx)
            for start in range(0, len(order), self.batch_size):
                b = order[start : start + self.batch_size]
                if len(b) == self.batch_size or not self.drop_last:
                    batches.append(b)
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        n = 0
        for idx in self.groups.values():
            n += len(idx) // self.batch_size if self.drop_last else -(-len(idx) // self.batch_size)
        return n
