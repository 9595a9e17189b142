"""Patient-wise splits and joint augmentation."""

import numpy as np
import pytest

from mrsisr.data import fold_split
from mrsisr.data.transforms import Transform, augment, random_transform
from mrsisr.errors import DataError

IDS = [f"sub-{i:02d}" for i in range(1, 26)]


def test_splits_never_share_a_subject_and_rotate():
    tests = []
    for fold in range(5):
        train, val, test = fold_split(reversed(IDS), fold)
        assert (len(train), len(val), len(test)) == (15, 5, 5)
        assert not set(train) & set(val) and not set(train) & set(test) and not set(val) & set(test)
        assert sorted(train + val + test) == IDS
        tests.append(test)
        # validation of fold i is the test group of fold i + 1
        assert val == fold_split(IDS, (fold + 1) % 5)[2]
    assert sorted(sum(tests, [])) == IDS
    assert fold_split(IDS, 0)[2] == IDS[:5]


def test_split_uneven_and_errors():
    train, val, test = fold_split([f"s{i}" for i in range(12)], 4)
    assert len(train) + len(val) + len(test) == 12 and not set(train) & set(test)
    with pytest.raises(DataError):
        fold_split(IDS, 5)
    with pytest.raises(DataError):
        fold_split(["a", "a", "b", "c", "d"], 0)
    with pytest.raises(DataError):
        fold_split(["a", "b"], 0)


def test_augmentation_moves_everything_identically():
    rng = np.random.default_rng(0)
    base = rng.random((64, 64))
    images = {
        "map": base,
        "mask": base > 0.5,
        "t1": base * 3 + 1,
        "flair": base * 2,
    }
    seen = set()
    for i in range(40):
        out, t = augment(images, np.random.default_rng(i))
        seen.add((t.k, t.flip))
        assert all(-3 <= v <= 3 for v in t.shift)
        np.testing.assert_array_equal(out["mask"], out["map"] > 0.5)
        np.testing.assert_allclose(out["t1"], out["map"] * 3 + 1)
        np.testing.assert_allclose(out["flair"], out["map"] * 2)
        np.testing.assert_array_equal(out["map"], t(base))
    assert len(seen) == 8  # all rotations and flips occur


def test_transform_definition():
    x = np.arange(16.0).reshape(4, 4)
    t = Transform(k=1, flip=True, shift=(1, -2))
    ref = np.roll(np.rot90(x, 1)[:, ::-1], (1, -2), axis=(0, 1))
    np.testing.assert_array_equal(t(x), ref)
    t0 = random_transform(np.random.default_rng(1), max_shift=0)
    assert t0.shift == (0, 0)
