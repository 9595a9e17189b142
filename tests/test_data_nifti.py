"""Real-data layout: loader, resampling, the authors' numpy layout, and `mrsisr data check`."""

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from mrsisr.cli.data import app
from mrsisr.data import METABOLITES, check_dataset, load_subject
from mrsisr.data.resample import resample_to_grid
from mrsisr.errors import DataError

AFF = np.diag([3.4375, 3.4375, 3.41, 1.0])
AFF[:3, 3] = (-108.3, -125.3, -10.0)
S = 3


def _save(path, data, affine):
    nib.save(nib.Nifti1Image(np.asarray(data), affine), str(path))


def _mri_affine():
    a = AFF.copy()
    a[:3, :3] /= 3.0  # 3x finer in every axis
    a[:3, 3] = AFF[:3, 3] - AFF[:3, :3] @ np.array([1 / 3, 1 / 3, 1 / 3])
    return a


def _make_subject(d, rng, mets=METABOLITES, mask=True):
    d.mkdir(parents=True)
    yy, xx = np.mgrid[:64, :64]
    brain = ((yy - 32) ** 2 + (xx - 32) ** 2) < 26**2
    for m in mets:
        _save(d / f"{m}.nii.gz", (rng.random((64, 64, S)) + 0.5) * brain[..., None], AFF)
    if mask:
        _save(d / "mask.nii.gz", np.repeat(brain[..., None], S, 2).astype(np.uint8), AFF)
    for name in ("T1", "FLAIR"):
        _save(
            d / f"{name}.nii.gz",
            rng.random((192, 192, 3 * S)).astype(np.float32) + 0.1,
            _mri_affine(),
        )
    return d


@pytest.fixture
def good(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    for i in (1, 2):
        _make_subject(root / f"sub-{i:02d}", rng)
    return root


def _snapshot(root):
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_good_folder_loads_and_checks(good):
    assert check_dataset(good) == []
    sub = load_subject(good / "sub-01")
    assert sub.subject == "sub-01" and sub.shape == (S, 64, 64)
    assert sub.metabolites == METABOLITES
    np.testing.assert_allclose(sub.affine, AFF)
    raw = np.asarray(nib.load(str(good / "sub-01" / "NAA.nii.gz")).dataobj)
    np.testing.assert_allclose(sub.maps["NAA"][1], raw[:, :, 1] * sub.masks["NAA"][1], rtol=1e-6)
    # T1 stored at 3x in every axis is block-averaged exactly onto the MRSI grid
    t1 = np.asarray(nib.load(str(good / "sub-01" / "T1.nii.gz")).dataobj)
    block = t1.reshape(64, 3, 64, 3, S, 3).mean(axis=(1, 3, 5))
    np.testing.assert_allclose(sub.t1, np.moveaxis(block, 2, 0), rtol=1e-5)
    result = CliRunner().invoke(app, ["check", str(good)])
    assert result.exit_code == 0 and "OK: 2 subject(s)" in result.output


def test_resample_identity_on_same_grid():
    data = np.random.default_rng(1).random((64, 64, 4)).astype(np.float32)
    out, outside = resample_to_grid(data, AFF, AFF, (64, 64, 4))
    np.testing.assert_allclose(out, data, rtol=1e-6)
    assert outside == 0


def _break(root, kind):
    d = root / "sub-02"
    rng = np.random.default_rng(2)
    if kind == "nan":
        x = rng.random((64, 64, S))
        x[3, 4, 0] = np.nan
        _save(d / "Glu.nii.gz", x, AFF)
        return "Glu.nii.gz", "non-finite"
    if kind == "affine":
        a = AFF.copy()
        a[0, 3] += 2.0
        _save(d / "Gly.nii.gz", rng.random((64, 64, S)), a)
        return "Gly.nii.gz", "affine differs"
    if kind == "flair":
        (d / "FLAIR.nii.gz").unlink()
        return "sub-02", "missing FLAIR"
    if kind == "4d":
        _save(d / "Ins.nii.gz", rng.random((64, 64, S, 2)), AFF)
        return "Ins.nii.gz", "4-D"
    if kind == "empty":
        _save(d / "mask.nii.gz", np.zeros((64, 64, S), np.uint8), AFF)
        return "mask.nii.gz", "empty"
    if kind == "negative":
        _save(d / "tCr.nii.gz", rng.random((64, 64, S)) - 0.5, AFF)
        return "tCr.nii.gz", "negative"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["nan", "affine", "flair", "4d", "empty", "negative"])
def test_check_reports_each_broken_folder(good, kind):
    fname, words = _break(good, kind)
    problems = check_dataset(good)
    assert len(problems) == 1, problems
    assert fname in problems[0] and words in problems[0]
    before = _snapshot(good)
    result = CliRunner().invoke(app, ["check", str(good)])
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if ln.startswith("problem:")]
    assert len(lines) == 1 and fname in lines[0] and words in lines[0]
    assert _snapshot(good) == before  # nothing written
    with pytest.raises(DataError, match=words):
        load_subject(good / "sub-02")
    load_subject(good / "sub-01")  # the intact subject still loads


def test_all_problems_listed_one_line_each(good):
    found = [_break(good, k) for k in ("nan", "affine", "flair", "4d", "negative")]
    result = CliRunner().invoke(app, ["check", str(good)])
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if ln.startswith("problem:")]
    assert len(lines) == len(found)
    for fname, words in found:
        assert any(fname in ln and words in ln for ln in lines)


def test_map_without_mask_file_uses_nonzero(tmp_path):
    d = _make_subject(tmp_path / "s", np.random.default_rng(3), mets=("NAA", "tCho"), mask=False)
    sub = load_subject(d)
    assert sub.metabolites == ("tCho", "NAA")
    assert np.array_equal(sub.masks["NAA"], sub.maps["NAA"] != 0)
    assert not sub.masks["NAA"][:, 0, 0].any() and sub.masks["NAA"][:, 32, 32].all()


def test_empty_map_without_mask_and_missing_folder(tmp_path):
    d = _make_subject(tmp_path / "s", np.random.default_rng(4), mets=("NAA",), mask=False)
    _save(d / "NAA.nii.gz", np.zeros((64, 64, S)), AFF)
    (problem,) = check_dataset(d)
    assert "NAA.nii.gz" in problem and "empty mask" in problem
    assert "not a folder" in check_dataset(tmp_path / "nothing")[0]
    (tmp_path / "empty").mkdir()
    assert "no subject folders" in check_dataset(tmp_path / "empty")[0]


def test_authors_numpy_layout(tmp_path):
    rng = np.random.default_rng(5)
    d = tmp_path / "patient1"
    (d / "Met_filtered").mkdir(parents=True)
    (d / "MRI_sliced").mkdir()
    names = {"Cr+PCr": "tCr", "GPC+PCh": "tCho", "NAA": "NAA", "Glu": "Glu", "Ins": "Ins",
             "Gln": "Gln", "Gly": "Gly"}  # fmt: skip
    for fname in names:
        x = rng.random((S, 64, 64)).astype(np.float32)
        x[:, :5] = 0
        np.save(d / "Met_filtered" / f"{fname}.npy", x)
    t1 = rng.random((3 * S, 192, 192)).astype(np.float32)
    np.save(d / "MRI_sliced" / "T1_sliced.npy", t1)
    np.save(d / "MRI_sliced" / "flair_sliced.npy", t1 * 2)
    assert check_dataset(d) == []
    sub = load_subject(d)
    assert sub.metabolites == METABOLITES and sub.shape == (S, 64, 64)
    np.testing.assert_array_equal(sub.maps["tCho"], np.load(d / "Met_filtered" / "GPC+PCh.npy"))
    assert not sub.masks["tCr"][:, :5].any() and sub.masks["tCr"][:, 5:].all()
    np.testing.assert_allclose(
        sub.t1, t1.reshape(S, 3, 64, 3, 64, 3).mean(axis=(1, 3, 5)), rtol=1e-5
    )
    np.testing.assert_allclose(sub.flair, 2 * sub.t1, rtol=1e-5)
    (d / "MRI_sliced" / "flair_sliced.npy").unlink()
    (problem,) = check_dataset(d)
    assert "flair_sliced.npy" in problem and "missing" in problem


def test_bids_like_names_are_recognised(cohort5, tmp_path):
    import shutil

    from mrsisr.data import load_subject

    src = sorted(p for p in cohort5.iterdir() if p.is_dir())[0]
    dst = tmp_path / "sub-01"
    dst.mkdir()
    names = {"T1": "sub-01_ses-1_T1w", "FLAIR": "sub-01_FLAIR", "mask": "sub-01_mask"}
    for f in src.glob("*.nii.gz"):
        stem = f.name[: -len(".nii.gz")]
        shutil.copy(f, dst / f"{names.get(stem, 'sub-01_' + stem)}.nii.gz")
    a, b = load_subject(src), load_subject(dst)
    assert a.metabolites == b.metabolites
    for m in a.metabolites:
        assert np.array_equal(a.maps[m], b.maps[m])
    assert np.array_equal(a.t1, b.t1) and np.array_equal(a.flair, b.flair)
