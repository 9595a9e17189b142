"""MRSIDataset, collate and the one-metabolite batch sampler."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mrsisr.data import (
    LR_SIZES,
    MetaboliteBatchSampler,
    MRSIDataset,
    Subject,
    collate,
    kspace_lowres,
)
from mrsisr.errors import DataError
from mrsisr.types import Batch


def _subject(name, seed, n_slices=3):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:64, :64]
    brain = ((yy - 30) ** 2 + (xx - 34) ** 2) < 22**2
    maps, masks = {}, {}
    for i, m in enumerate(("NAA", "tCho")):
        x = (rng.random((n_slices, 64, 64)) * (i + 1) * 4 + 1).astype(np.float32) * brain
        x[-1] = 0  # an empty map is skipped
        maps[m], masks[m] = x, x != 0
    t1 = (rng.random((n_slices, 64, 64)) * 300).astype(np.float32)
    return Subject(name, maps, masks, t1, t1 * 2 + 5, shape=(n_slices, 64, 64))


def test_items_normalisation_and_lr():
    ds = MRSIDataset([_subject("a", 0), _subject("b", 1)], lr_size=16)
    assert len(ds) == 2 * 2 * 2  # subjects x metabolites x non-empty slices
    sub = ds.subjects[0]
    item = ds[0]
    raw = sub.maps[item.metabolite][item.slice_index]
    assert item.subject == "a" and item.scale == 4.0 and item.lr_size == 16
    assert item.max_value == pytest.approx(float(raw.max()))
    assert float(item.x0.max()) == pytest.approx(1.0)
    torch.testing.assert_close(item.x0[0], torch.from_numpy(raw / raw.max()))
    torch.testing.assert_close(item.mask[0], torch.from_numpy((raw != 0).astype(np.float32)))
    torch.testing.assert_close(item.lr[0], torch.from_numpy(kspace_lowres(raw / raw.max(), 16)))
    assert float(item.t1.max()) == pytest.approx(1.0) and float(item.flair.max()) == pytest.approx(
        1.0
    )
    # deterministic evaluation mode: same item twice
    torch.testing.assert_close(ds[3].lr, ds[3].lr)


def test_training_draws_all_sizes_and_augment_before_degradation():
    ds = MRSIDataset([_subject("a", 0)], augment=True, seed=3)
    sizes, moved = set(), False
    for epoch in range(30):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            it = ds[i]
            sizes.add(it.lr_size)
            assert it.scale == pytest.approx(64 / it.lr_size)
            # mask moves with the map, and LR is made from the augmented map
            assert torch.equal(it.mask > 0, it.x0 > 0)
            torch.testing.assert_close(
                it.lr[0], torch.from_numpy(kspace_lowres(it.x0[0].numpy(), it.lr_size))
            )
            raw = ds.subjects[0].maps[it.metabolite][it.slice_index]
            moved |= not np.array_equal(it.x0[0].numpy(), raw / raw.max())
    assert sizes == set(LR_SIZES) and moved
    ds.set_epoch(7)
    torch.testing.assert_close(ds[1].x0, ds[1].x0)  # same epoch, same draw


def test_augmentation_moves_mri_with_map():
    sub = _subject("a", 0)
    sub.t1 = sub.maps["NAA"] * 3.0
    sub.flair = sub.maps["NAA"] + 0.0
    ds = MRSIDataset([sub], metabolites=("NAA",), augment=True, seed=1)
    for epoch in range(5):
        ds.set_epoch(epoch)
        it = ds[0]
        torch.testing.assert_close(it.t1, it.x0)  # both normalised by their own max
        torch.testing.assert_close(it.flair, it.x0)


def test_collate_and_loader():
    ds = MRSIDataset([_subject("a", 0), _subject("b", 1)], lr_size=8)
    batch = next(iter(DataLoader(ds, batch_size=3, collate_fn=collate)))
    assert isinstance(batch, Batch)
    assert batch.x0.shape == (3, 1, 64, 64) and batch.cond.channels().shape == (3, 4, 64, 64)
    assert batch.cond.scale.tolist() == [8.0] * 3 and batch.max_value.shape == (3,)
    assert batch.slice_index.dtype == torch.int64 and len(batch.subject) == 3
    with pytest.raises(DataError):
        collate([])


def test_metabolite_batch_sampler():
    ds = MRSIDataset([_subject(f"s{i}", i, n_slices=6) for i in range(3)])
    sampler = MetaboliteBatchSampler(ds, batch_size=4, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(ds)))
    for b in batches:
        assert len({ds.metabolite_of(i) for i in b}) == 1
    sampler.set_epoch(1)
    assert list(sampler) != batches  # reshuffled
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=collate)
    for batch in loader:
        assert len(set(batch.metabolite)) == 1
    dropped = MetaboliteBatchSampler(ds, batch_size=4, drop_last=True, shuffle=False)
    assert all(len(b) == 4 for b in dropped) and len(list(dropped)) == len(dropped)


def test_subject_ids_and_errors():
    subs = [_subject("a", 0), _subject("b", 1)]
    only_b = MRSIDataset(subs, subject_ids=["b"])
    assert {only_b[i].subject for i in range(len(only_b))} == {"b"}
    with pytest.raises(DataError):
        MRSIDataset(subs, subject_ids=["zz"])
    with pytest.raises(DataError):
        MRSIDataset(subs, metabolites=("Lac",))
    with pytest.raises(DataError):
        MRSIDataset(subs, lr_size=9)
