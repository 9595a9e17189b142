"""The digital glioma phantom: determinism, layout, healthy contrasts, tumour patterns."""

import hashlib
import json

import nibabel as nib
import numpy as np
import pytest

from mrsisr.data import (
    METABOLITES,
    check_dataset,
    load_subject,
    make_phantom_cohort,
    phantom_cohort,
)
from mrsisr.data.phantom import save_preview


def _digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return make_phantom_cohort(tmp_path_factory.mktemp("phantom") / "c", subjects=3, seed=0)


def _vol(sub_dir, name):
    return np.asarray(nib.load(str(sub_dir / name)).dataobj)


def test_layout_and_loader(cohort):
    assert check_dataset(cohort) == []
    info = json.loads((cohort / "phantom.json").read_text())
    assert info["seed"] == 0 and info["subjects"] == 3
    sub = load_subject(cohort / "sub-01")
    assert sub.shape == (13, 64, 64) and sub.metabolites == METABOLITES
    img = nib.load(str(cohort / "sub-01" / "NAA.nii.gz"))
    assert img.shape == (64, 64, 13)
    np.testing.assert_allclose(np.sqrt((img.affine[:3, :3] ** 2).sum(0)), [3.4375, 3.4375, 3.41])
    for m in METABOLITES:
        assert sub.maps[m].dtype == np.float32 and sub.maps[m].min() >= 0
        assert np.array_equal(sub.masks[m], sub.maps[m] != 0)
        assert 0.15 < sub.masks[m].mean() < 0.6
    assert sub.t1.shape == sub.flair.shape == (13, 64, 64)
    # T1 and FLAIR carry the brain: brighter inside the mask than in the background
    inside = sub.masks["NAA"]
    assert sub.t1[inside].mean() > 5 * np.median(sub.t1[~inside & (sub.t1 < 0.2)])


def test_byte_identical_per_seed_and_different_across_seeds(cohort, tmp_path):
    again = make_phantom_cohort(tmp_path / "again", subjects=3, seed=0)
    assert _digest(again) == _digest(cohort)
    other = make_phantom_cohort(tmp_path / "other", subjects=1, seed=1)
    a = _vol(cohort / "sub-01", "NAA.nii.gz")
    b = _vol(other / "sub-01", "NAA.nii.gz")
    assert not np.array_equal(a, b)
    # subjects within a cohort differ too
    assert not np.array_equal(a, _vol(cohort / "sub-02", "NAA.nii.gz"))


def _gm_wm_ratio(sub_dir, met):
    """GM/WM concentration ratio by least squares of the clean map on the tissue fractions in
    healthy unmasked voxels (this separates the tissue contrast from CSF partial volume)."""
    x = _vol(sub_dir / "diagnostics", f"clean_{met}.nii.gz")
    gm = _vol(sub_dir / "diagnostics", "gm.nii.gz")
    wm = _vol(sub_dir / "diagnostics", "wm.nii.gz")
    lab = _vol(sub_dir / "diagnostics", "labels.nii.gz")
    sel = (_vol(sub_dir, "mask.nii.gz") > 0) & (lab == 0)
    assert sel.sum() > 1000
    c_gm, c_wm = np.linalg.lstsq(np.stack([gm[sel], wm[sel]], 1), x[sel], rcond=None)[0]
    return c_gm / c_wm


def test_healthy_contrasts_follow_literature(cohort):
    # PHANTOM.md §2 GM/WM: tCho 0.69 (WM higher); tCr 1.19, Glu 1.30, Gln 2.32, Gly 3.7 (GM higher)
    bounds = {"tCho": (0.55, 0.85), "tCr": (1.05, 1.4), "Glu": (1.1, 1.5), "Gln": (1.5, 2.8),
              "Gly": (2.0, 4.5)}  # fmt: skip
    for d in sorted(p for p in cohort.iterdir() if p.is_dir()):
        for met, (lo, hi) in bounds.items():
            assert lo < _gm_wm_ratio(d, met) < hi, (d.name, met)
        # the raw contrast is visible too: healthy WM-rich voxels have more tCho than GM-rich ones
        x = _vol(d, "tCho.nii.gz")
        gm = _vol(d / "diagnostics", "gm.nii.gz")
        wm = _vol(d / "diagnostics", "wm.nii.gz")
        ok = (_vol(d, "mask.nii.gz") > 0) & (_vol(d / "diagnostics", "labels.nii.gz") == 0)
        assert np.median(x[ok & (wm > 0.8)]) > np.median(x[ok & (gm > 0.6)])


def test_tumour_has_high_tcho_low_naa(cohort):
    for d in sorted(p for p in cohort.iterdir() if p.is_dir()):
        lab = _vol(d / "diagnostics", "labels.nii.gz")
        mask = _vol(d, "mask.nii.gz") > 0
        wm = _vol(d / "diagnostics", "wm.nii.gz")
        tumour = mask & np.isin(lab, (2, 3))  # enhancing rim and infiltration
        ref = mask & (lab == 0) & (wm > 0.8)
        assert tumour.sum() > 5, d.name
        for met, up in (("tCho", True), ("NAA", False), ("Gly", True)):
            x = _vol(d, f"{met}.nii.gz")  # the noisy, masked training target
            ratio = np.median(x[tumour]) / np.median(x[ref])
            assert (ratio > 1.2) if up else (ratio < 0.8), (d.name, met, ratio)


def test_preview(cohort, tmp_path):
    png = save_preview(cohort / "sub-01", tmp_path / "p.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_phantom_cohort_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MRSISR_CACHE", str(tmp_path / "cache"))
    path = phantom_cohort(seed=2, subjects=1)
    assert path == tmp_path / "cache" / "phantom-s2-n1"
    stamp = (path / "sub-01" / "NAA.nii.gz").stat().st_mtime_ns
    assert phantom_cohort(seed=2, subjects=1) == path  # reused, not rebuilt
    assert (path / "sub-01" / "NAA.nii.gz").stat().st_mtime_ns == stamp
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["phantom-s2-n1"]  # no temp left
