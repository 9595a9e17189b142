"""`mrsisr sr`: NIfTI in, NIfTI out with the input's affine and shape, and uncertainty maps."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import nibabel as nib
import numpy as np
import pytest

from mrsisr.errors import RecipeError
from mrsisr.pipelines import pipeline_parts
from mrsisr.recipes import load_recipe
from mrsisr.sr import sampling_overrides
from mrsisr.weights import save_weights


@pytest.fixture(scope="module")
def tiny_ftddm(tmp_path_factory):
    """Random tiny FTDDM weights: enough to exercise the plumbing (not the quality)."""
    pipe = load_recipe("ftddm", size="tiny").build()
    path = tmp_path_factory.mktemp("w") / "ftddm-tiny.safetensors"
    save_weights({k: m for k, (m, _) in pipeline_parts(pipe).items()}, path)
    return path


def test_sr_round_trips_a_phantom_subject(cli, cohort5, tiny_ftddm, tmp_path):
    subject = sorted(p for p in cohort5.iterdir() if p.is_dir())[0]
    out = tmp_path / "sr"
    res = cli(
        "sr",
        "ftddm",
        "--size",
        "tiny",
        "--weights",
        str(tiny_ftddm),
        "--input",
        str(subject),
        "--scale",
        "4",
        "--samples",
        "3",
        "--steps",
        "5",
        "--metabolites",
        "NAA,tCho,Gly",
        "--out",
        str(out),
    )
    assert res.exit_code == 0, res.output
    mask_all = np.asarray(nib.load(subject / "mask.nii.gz").dataobj) > 0
    for met in ("NAA", "tCho", "Gly"):
        src = nib.load(subject / f"{met}.nii.gz")
        mean, std, lr = (nib.load(out / f"{met}{s}.nii.gz") for s in ("", "_std", "_lr"))
        for img in (mean, std, lr):
            assert img.shape == src.shape
            assert np.allclose(img.affine, src.affine)
        mask = (np.asarray(src.dataobj) != 0) & mask_all
        m, s = np.asarray(mean.dataobj), np.asarray(std.dataobj)
        assert np.all(s[~mask] == 0) and np.all(m[~mask] == 0)
        assert s[mask].max() > 0  # three different samples inside the mask
        assert 0 <= m.min() and m.max() <= np.asarray(src.dataobj).max() * (1 + 1e-5)
    assert not (out / "Glu.nii.gz").exists()  # only the metabolites asked for
    info = json.loads((out / "sr.json").read_text())
    assert info["samples"] == 3 and info["nfe"] == 1 + 5 and info["scale"] == 4.0
    assert info["batch"] == 16  # no --batch on a CPU: the CPU default, recorded

    again = cli(
        "sr",
        "ftddm",
        "--size",
        "tiny",
        "--weights",
        str(tiny_ftddm),
        "--input",
        str(subject),
        "--scale",
        "4",
        "--out",
        str(out),
    )
    assert again.exit_code == 2 and "already exists" in again.output


def test_sr_bad_input_reports_and_writes_nothing(cli, cohort5, tiny_ftddm, tmp_path):
    subject = sorted(p for p in cohort5.iterdir() if p.is_dir())[0]
    bad = tmp_path / "bad"
    shutil.copytree(subject, bad, ignore=shutil.ignore_patterns("diagnostics"))
    img = nib.load(bad / "Glu.nii.gz")
    data = np.asarray(img.dataobj).copy()
    data[10, 10, 0] = np.nan
    nib.save(nib.Nifti1Image(data, img.affine), bad / "Glu.nii.gz")
    out = tmp_path / "out"
    res = cli(
        "sr",
        "ftddm",
        "--size",
        "tiny",
        "--weights",
        str(tiny_ftddm),
        "--input",
        str(bad),
        "--scale",
        "4",
        "--out",
        str(out),
    )
    assert res.exit_code == 2 and "Glu.nii.gz" in res.output and "non-finite" in res.output
    assert "Traceback" not in res.output and not out.exists()
    assert not list(tmp_path.glob(".out.*"))
    res = cli(
        "sr",
        "ftddm",
        "--size",
        "tiny",
        "--weights",
        str(tiny_ftddm),
        "--input",
        str(subject),
        "--scale",
        "3",
        "--out",
        str(out),
    )
    assert res.exit_code == 2 and "scale" in res.output and not out.exists()


def test_sampling_overrides():
    assert sampling_overrides("ftddm", steps=20) == {
        "sampler": {"type": "respace", "steps": 20, "tau_d": 0.9}
    }
    assert sampling_overrides("dpm_solver_pp", steps=10) == {"sampler": {"steps": 10}}
    assert sampling_overrides("ftddm", tau_f=0.5) == {"initializer": {"tau_f": 0.5}}
    for kwargs in ({"steps": 5}, {"tau_d": 0.5}, {"tau_f": 0.5}):
        with pytest.raises(RecipeError):
            sampling_overrides("munet_fs_cwgan", **kwargs)


def test_load_refuses_another_t_start_for_a_trained_initializer(tiny_ftddm, tmp_path):
    import mrsisr
    from mrsisr.errors import CheckpointError

    weights = tmp_path / "w.safetensors"
    shutil.copy(tiny_ftddm, weights)
    card = {"resolved_recipe": load_recipe("ftddm", size="tiny").to_dict()}
    weights.with_suffix(".json").write_text(json.dumps(card))
    assert mrsisr.load("ftddm", size="tiny", weights=weights).t_start == 100
    with pytest.raises(CheckpointError, match="t_start=100, not 50"):
        mrsisr.load("ftddm", size="tiny", weights=weights, overrides={"pipeline.t_start": 50})


def _native_subject(src, dst, size=16, phase=0.0):
    """A subject acquired at `size`×`size`: the central k-space block of each phantom map, with
    its own header (sform code 2, no qform, descrip, dim_info), a mask on the acquired grid.
    NAA is complex, times `exp(i·phase)` (a number, or an array over the coarse grid)."""
    dst.mkdir()
    f = 64 // size
    for met in ("NAA", "tCho"):
        img = nib.load(src / f"{met}.nii.gz")
        hr = np.moveaxis(np.asarray(img.dataobj, dtype=np.float64), 2, 0)
        k = np.fft.fftshift(
            np.fft.fft2(np.fft.ifftshift(hr, axes=(1, 2)), norm="ortho"), axes=(1, 2)
        )
        c = slice(32 - size // 2, 32 + size // 2)
        block = k[:, c, c]
        low = np.fft.fftshift(
            np.fft.ifft2(np.fft.ifftshift(block, axes=(1, 2)), norm="ortho"), axes=(1, 2)
        )
        # the amplitude of an image on the coarse matrix: complex (with its phase) for NAA,
        # a magnitude map, as most fitting tools write, for tCho
        native = low * np.exp(1j * np.asarray(phase)) / f if met == "NAA" else np.abs(low) / f
        aff = img.affine @ np.diag([f, f, 1.0, 1.0])
        dtype = np.complex64 if np.iscomplexobj(native) else np.float32
        out = nib.Nifti1Image(np.moveaxis(native, 0, 2).astype(dtype), aff)
        out.set_sform(aff, code=2)
        out.set_qform(None, code=0)
        out.header["descrip"] = b"LCModel fit, CSI 16x16"
        out.header.set_dim_info(freq=0, phase=1, slice=2)
        out.header.set_xyzt_units("mm", "sec")
        nib.save(out, dst / f"{met}.nii.gz")
    mask = nib.load(src / "mask.nii.gz")
    coarse = np.asarray(mask.dataobj)[::f, ::f]
    nib.save(nib.Nifti1Image(coarse, mask.affine @ np.diag([f, f, 1.0, 1.0])), dst / "mask.nii.gz")
    for mri in ("T1", "FLAIR"):
        shutil.copy(src / f"{mri}.nii.gz", dst / f"{mri}.nii.gz")
    return dst


def test_sr_takes_a_native_16x16_acquisition_and_keeps_its_header(
    cli, cohort5, tiny_ftddm, tmp_path
):
    from mrsisr.data import load_subject
    from mrsisr.data.degrade import kspace_lowres, zero_fill, zero_fill_affine

    src = sorted(p for p in cohort5.iterdir() if p.is_dir())[0]
    sub = _native_subject(src, tmp_path / "sub-native")
    loaded = load_subject(sub)
    assert loaded.native_size == 16 and loaded.shape[1:] == (64, 64)
    # the zero-filled map is the protocol's LR map of the 64-grid original (inside the mask)
    hr = np.moveaxis(np.asarray(nib.load(src / "NAA.nii.gz").dataobj, dtype=np.float64), 2, 0)
    inside = loaded.masks["NAA"]
    want = kspace_lowres(hr, 16)
    assert np.abs(loaded.maps["NAA"] - want)[inside].max() < 1e-4 * want.max()
    # a magnitude map is zero-filled as it is (its phase is lost: close to, not equal to, the above)
    mag = np.moveaxis(np.asarray(nib.load(sub / "tCho.nii.gz").dataobj), 2, 0)
    inside = loaded.masks["tCho"]
    assert np.allclose(loaded.maps["tCho"][inside], zero_fill(mag)[inside], atol=1e-5)
    native_aff = nib.load(sub / "NAA.nii.gz").affine
    assert np.allclose(loaded.affine, zero_fill_affine(native_aff, 16))
    assert np.allclose(loaded.affine, nib.load(src / "NAA.nii.gz").affine)  # the phantom's grid

    out = tmp_path / "sr"
    args = ["sr", "ftddm", "--size", "tiny", "--weights", str(tiny_ftddm), "--input", str(sub)]
    fig = tmp_path / "preview.png"
    res = cli(*args, "--samples", "2", "--steps", "3", "--out", str(out), "--preview", str(fig),
              "--consistency", "kspace")  # fmt: skip
    assert res.exit_code == 0, res.output
    said = " ".join(res.output.split())
    assert "the acquired k-space block is the data term for NAA" in said
    assert "estimated from the magnitude for tCho" in said
    import matplotlib.image as mpimg

    png = mpimg.imread(fig)
    assert png.shape[0] > 300 and png.shape[1] > 600  # 2 metabolites × 4 panels with colour bars
    assert "×4" in res.output
    for name in ("NAA", "NAA_std", "NAA_lr", "tCho"):
        img = nib.load(out / f"{name}.nii.gz")
        assert img.shape[:2] == (64, 64) and np.allclose(img.affine, loaded.affine)
        h = img.header
        assert int(h["sform_code"]) == 2 and int(h["qform_code"]) == 0
        assert h["descrip"].tobytes().rstrip(b"\0") == b"LCModel fit, CSI 16x16"
        assert h.get_dim_info() == (0, 1, 2)
    info = json.loads((out / "sr.json").read_text())
    assert info["scale"] == 4.0 and info["native_matrix"] == 16 and info["samples"] == 2
    assert info["measured"] == ["NAA"]  # the complex map; tCho is a magnitude map
    for key in ("mrsisr_version", "seed", "device", "dtype", "command", "inputs", "wall_time_s"):
        assert key in info, key
    assert list(info["weights_sha256"].values())[0] == __import__(
        "mrsisr.weights"
    ).weights.file_sha256(tiny_ftddm)
    assert info["command"].startswith("mrsisr sr ftddm")
    # a scale that disagrees with the acquired matrix is refused, nothing written
    late = cli(
        *args, "--preview", str(fig), "--preview-slice", "99", "--out", str(tmp_path / "bad")
    )
    assert late.exit_code == 2 and "--preview-slice 99" in late.output
    bad = cli(*args, "--scale", "2", "--out", str(tmp_path / "bad"))
    assert bad.exit_code == 2 and "16×16" in bad.output and "×4" in bad.output
    assert not (tmp_path / "bad").exists()


def test_an_acquisition_at_its_matrix_is_kept_exactly_by_data_consistency(cohort5, tmp_path):
    """Complex maps read at their acquired matrix carry the acquisition itself, without the
    scanner's global phase: its k-space block is the acquired one, it reaches the condition,
    and the projection keeps it exactly (the truth is a fixed point), where magnitude maps only
    allow an estimate. A phase that varies across the image is refused with a note."""
    import torch

    from mrsisr.consistency import KSpaceConsistency, measured_block_error
    from mrsisr.data import MRSIDataset, collate, load_subject
    from mrsisr.kspace import fft2c, scale_block_mask

    src = sorted(p for p in cohort5.iterdir() if p.is_dir())[0]
    loaded = load_subject(_native_subject(src, tmp_path / "sub-native", phase=2.3))
    assert sorted(loaded.measured) == ["NAA"] and not loaded.notes  # tCho: a magnitude map
    naa = loaded.measured["NAA"]
    assert naa.dtype == np.complex64 and naa.shape[1:] == (64, 64)
    hr = np.moveaxis(np.asarray(nib.load(src / "NAA.nii.gz").dataobj, dtype=np.float64), 2, 0)
    c = slice(24, 40)
    want = fft2c(hr)[:, c, c]
    got = fft2c(loaded.measured["NAA"].astype(np.complex128))
    assert np.abs(got[:, c, c] - want).max() < 1e-5 * np.abs(want).max()  # the acquired block
    outside = np.ones((64, 64), bool)
    outside[c, c] = False
    assert np.abs(got[:, outside]).max() < 1e-5 * np.abs(want).max()  # zero-filled
    inside = loaded.masks["NAA"]  # the map is the acquisition's magnitude (masked)
    assert np.allclose(
        np.abs(loaded.measured["NAA"])[inside], loaded.maps["NAA"][inside], atol=1e-5
    )

    data = MRSIDataset([loaded], metabolites=("NAA",), lr_size=16)
    batch = collate([data[i] for i in range(len(data))])
    cond = batch.cond.to(dtype=torch.float64)
    assert cond.measured is not None and cond.measured.dtype == torch.complex128
    # the unmasked truth (normalised like the item) is a fixed point of the projection, and any
    # guess is moved onto the acquired block exactly
    top = batch.max_value.double().view(-1, 1, 1)
    truth = torch.from_numpy(hr[batch.slice_index.numpy()]).unsqueeze(1) / top.unsqueeze(1)
    proj = KSpaceConsistency(use_mask=False, clamp=False)  # magnitude mode is not needed
    torch.testing.assert_close(proj.project(truth, cond), truth, rtol=0, atol=1e-5)
    y = proj.project(torch.zeros_like(truth), cond)
    block = scale_block_mask(cond.scale, 64)
    diff = (fft2c(y) - fft2c(truth))[block].abs().max() / fft2c(truth)[block].abs().max()
    assert float(diff) < 1e-5 and float(measured_block_error(y, cond).max()) < 1e-5
    # without the phase (the protocol's magnitude map) the same projection is only approximate
    lost = KSpaceConsistency(use_mask=False, clamp=False).project(
        torch.zeros_like(truth), replace(cond, measured=None)
    )
    lost_diff = (fft2c(lost) - fft2c(truth))[block].abs().max() / fft2c(truth)[block].abs().max()
    assert float(lost_diff) > 100 * float(diff)

    # only for the acquired matrix and without augmentation; a batch mixing items with and
    # without an acquisition hands on none
    assert MRSIDataset([loaded], metabolites=("NAA",), lr_size=8)[0].measured is None
    assert MRSIDataset([loaded], metabolites=("NAA",), lr_size=16, augment=True)[0].measured is None
    assert MRSIDataset([loaded], lr_size=16, measured="none")[0].measured is None
    other = MRSIDataset([loaded], metabolites=("NAA",), lr_size=8)[0]
    assert collate([data[0], other]).cond.measured is None

    # a phase that varies across the image (a ramp of 2 rad over the field of view) is not a
    # real map's spectrum: only the magnitude is used, and the loader says why
    ramp = np.linspace(-1.0, 1.0, 16)[:, None] * np.ones((1, 16))
    varying = load_subject(_native_subject(src, tmp_path / "sub-ramp", phase=ramp[None]))
    assert "NAA" not in varying.measured
    assert len(varying.notes) == 1 and "phase varies" in varying.notes[0]


def test_simulated_acquisitions_and_bad_measured_modes(cohort5):
    import torch

    from mrsisr.consistency import KSpaceConsistency
    from mrsisr.data import MRSIDataset, collate, load_dataset
    from mrsisr.errors import DataError

    subs = load_dataset(cohort5)[:1]
    data = MRSIDataset(subs, metabolites=("NAA",), lr_size=16, measured="simulate")
    assert MRSIDataset(subs, metabolites=("NAA",), lr_size=16)[0].measured is None  # phantom maps
    b = collate([data[i] for i in range(4)])
    cond, x0 = b.cond.to(dtype=torch.float64), b.x0.double()
    torch.testing.assert_close(cond.measured.abs(), cond.lr, rtol=0, atol=1e-6)
    # the masked truth is a fixed point of every step (data, mask, range)
    torch.testing.assert_close(
        KSpaceConsistency(iterations=3).project(x0, cond), x0, rtol=0, atol=1e-5
    )
    with pytest.raises(DataError, match="measured='phase'"):
        MRSIDataset(subs, measured="phase")


def test_maps_on_the_64_grid_need_a_scale_and_odd_matrices_are_refused(
    cli, cohort5, tiny_ftddm, tmp_path
):
    from mrsisr.data import check_subject_dir

    src = sorted(p for p in cohort5.iterdir() if p.is_dir())[0]
    res = cli("sr", "ftddm", "--size", "tiny", "--weights", str(tiny_ftddm), "--input", str(src),
              "--out", str(tmp_path / "o"))  # fmt: skip
    assert res.exit_code == 2 and "pass --scale" in res.output
    odd = tmp_path / "odd"
    shutil.copytree(src, odd)
    img = nib.load(odd / "NAA.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((15, 15, 3), np.float32), img.affine), odd / "NAA.nii.gz")
    assert any("15×15" in p and "acquired square matrix" in p for p in check_subject_dir(odd))


def test_super_resolve_one_map_from_arrays():
    import torch

    from mrsisr.errors import DataError

    pipe = load_recipe("ftddm", size="tiny", overrides={"sampler": {"type": "respace", "steps": 2}})
    pipe = pipe.build().eval()
    rng = np.random.default_rng(0)
    lr16 = rng.random((16, 16)) * 5.0
    lr16[:3] = 0.0  # excluded voxels
    ones = np.ones((64, 64))
    mean, std = pipe.super_resolve(lr16, t1=ones, flair=torch.ones(64, 64), samples=3)
    assert mean.shape == std.shape == (64, 64) and mean.dtype == np.float32
    # the mask, nearest-upsampled: fine rows 0-9 lie nearest to the excluded coarse rows 0-2
    assert np.all(mean[:10] == 0) and np.all(std[:10] == 0) and np.abs(mean[10:]).max() > 0
    from mrsisr.data.degrade import zero_fill

    assert mean.max() <= zero_fill(lr16)[10:].max() * 1.001 and std.max() > 0
    again, _ = pipe.super_resolve(lr16, t1=ones, flair=ones, samples=3)
    assert np.array_equal(mean, again)  # seeded
    with pytest.raises(DataError, match="16×16"):
        pipe.super_resolve(lr16, t1=ones, flair=ones, scale=2)
    with pytest.raises(DataError, match="pass `scale`"):
        pipe.super_resolve(np.ones((64, 64)), t1=ones, flair=ones)
    with pytest.raises(DataError, match="T1 and FLAIR"):
        pipe.super_resolve(lr16)
    with pytest.raises(DataError, match="shape"):
        pipe.super_resolve(lr16, t1=np.ones((32, 32)), flair=ones)
    with pytest.raises(DataError, match="non-negative"):
        pipe.super_resolve(-lr16, t1=ones, flair=ones)
    # a model trained without MRIs needs none
    no_mri = load_recipe(
        "ftddm",
        size="tiny",
        overrides={
            "denoiser.use_mri": False,
            "initializer.mri": False,
            "initializer.flow.cond_channels": 2,
            "sampler": {"type": "respace", "steps": 2},
        },
    ).build()
    m, _ = no_mri.eval().super_resolve(lr16, samples=2)
    assert m.shape == (64, 64)


def test_sr_on_a_dataset_folder_writes_one_folder_per_subject(cli, cohort5, tiny_ftddm, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for src in sorted(p for p in cohort5.iterdir() if p.is_dir())[:2]:
        shutil.copytree(src, data / src.name)
    out = tmp_path / "sr-all"
    args = ["sr", "ftddm", "--size", "tiny", "--weights", str(tiny_ftddm), "--input", str(data), "--scale", "4",
            "--samples", "1", "--steps", "2", "--metabolites", "NAA"]  # fmt: skip
    res = cli(*args, "--out", str(out))
    assert res.exit_code == 0, res.output
    for sub in sorted(p.name for p in data.iterdir()):
        assert (out / sub / "NAA.nii.gz").is_file()
        assert json.loads((out / sub / "sr.json").read_text())["inputs"][0].endswith(sub)
    assert (out / ".mrsisr-sr").is_file()
    again = cli(*args, "--out", str(out))  # an existing output needs --overwrite
    assert again.exit_code == 2
    assert cli(*args, "--out", str(out), "--overwrite").exit_code == 0


def test_a_model_without_mris_takes_a_subject_without_them(cli, cohort5, tiny_ftddm, tmp_path):
    recipe = tmp_path / "ftddm_nomri.toml"
    recipe.write_text(
        '[recipe]\nbase = "ftddm"\nname = "ftddm_nomri"\n\n[denoiser]\nuse_mri = false\n\n'
        "[initializer]\nmri = false\n\n[initializer.flow]\ncond_channels = 2\n"
    )
    pipe = load_recipe(str(recipe), size="tiny").build()
    weights = tmp_path / "nomri.safetensors"
    save_weights({k: m for k, (m, _) in pipeline_parts(pipe).items()}, weights)
    src = sorted(p for p in cohort5.iterdir() if p.is_dir())[0]
    sub = tmp_path / "sub-nomri"
    shutil.copytree(src, sub)
    (sub / "T1.nii.gz").unlink()
    (sub / "FLAIR.nii.gz").unlink()
    common = ["--size", "tiny", "--input", str(sub), "--scale", "4", "--samples", "1",
              "--steps", "2", "--metabolites", "NAA"]  # fmt: skip
    res = cli("sr", str(recipe), "--weights", str(weights), *common, "--out", str(tmp_path / "a"))
    assert res.exit_code == 0, res.output
    assert (tmp_path / "a" / "NAA.nii.gz").is_file()
    res = cli("sr", "ftddm", "--weights", str(tiny_ftddm), *common, "--out", str(tmp_path / "b"))
    assert res.exit_code == 2 and "missing T1" in res.output and "without MRIs" in res.output
    assert not (tmp_path / "b").exists()


def test_estimate_seconds_through_the_pipeline_contract():
    """Chains are timed per evaluation (cut short via progress), one-step models whole."""
    from mrsisr.sr import estimate_seconds, maps_per_call

    pipe = load_recipe("ftddm", size="tiny").build().eval()
    calls: list[int] = []
    original = pipe.sample

    def counted(cond, generator=None, *, progress=None):
        calls.append(cond.batch_size)
        return original(cond, generator=generator, progress=progress)

    pipe.sample = counted
    one = estimate_seconds(pipe, n_maps=4, samples=2, batch=4)
    assert one is not None and one > 0
    assert calls == [4]  # one call, cut short: 2 maps x 2 samples per evaluation
    munet = load_recipe("munet_fs_cwgan", size="tiny").build().eval()
    assert estimate_seconds(munet, 4, 1, 4) > 0
    assert estimate_seconds(munet, 0, 1, 4) is None
    assert maps_per_call(64, 4) == 16 and maps_per_call(3, 4) == 1


def test_sr_batch_counts_images_per_evaluation(cohort5):
    """`--batch` is images per network evaluation everywhere: maps per call = batch // samples."""
    from mrsisr.sr import super_resolve

    pipe = load_recipe("munet_fs_cwgan", size="tiny").build().eval()
    seen: list[int] = []
    original = pipe.sample

    def counted(cond, generator=None, *, progress=None):
        seen.append(cond.batch_size)
        return original(cond, generator=generator, progress=progress)

    pipe.sample = counted
    sub = sorted(p for p in cohort5.iterdir() if p.is_dir())[0]
    res = super_resolve(pipe, sub, scale=4, samples=2, batch=4, metabolites=["NAA"])
    assert seen and max(seen) <= 4 and all(n % 2 == 0 for n in seen)
    assert sum(seen) == 2 * res.info["maps"]


def test_sr_takes_set_and_precision(cli, cohort5, tiny_ftddm, tmp_path):
    subject = sorted(p for p in cohort5.iterdir() if p.is_dir())[0]
    out = tmp_path / "sr"
    res = cli("sr", "ftddm", "--size", "tiny", "--weights", str(tiny_ftddm), "--input",
              str(subject), "--scale", "4", "--samples", "2", "--metabolites", "NAA",
              "--set", "sampler.type=dpm_solver_pp", "--steps", "3", "--precision", "fp32",
              "--out", str(out))  # fmt: skip
    assert res.exit_code == 0, res.output
    info = json.loads((out / "sr.json").read_text())
    assert info["nfe"] == 1 + 3  # the flow's draw, then 3 DPM-Solver++ steps
    assert "--set sampler.type=dpm_solver_pp" in info["command"]
    assert "--precision fp32" in info["command"] and info["dtype"] == "float32"
    assert np.isfinite(np.asarray(nib.load(out / "NAA.nii.gz").dataobj)).all()
