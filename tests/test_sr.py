"""`mrsisr sr`: NIfTI in, NIfTI out with the input's affine and shape, and uncertainty maps."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from mrsisr.errors import RecipeError
from mrsisr.pipeline import pipeline_parts
from mrsisr.recipes import load_recipe
from mrsisr.sr import sampling_overrides
from mrsisr.train.engine import save_weights


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
