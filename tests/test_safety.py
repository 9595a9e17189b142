"""Reliability: no command destroys user data, and bad input gets one line and exit code 2.

Each test runs the command as a user would and checks three things: the exit code, the one-line
message, and what is on disk afterwards (nothing lost, nothing half-written). The classes of bad
input covered here are listed in docs/reliability.md.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mrsisr.errors import CheckpointError
from mrsisr.pipelines import pipeline_parts
from mrsisr.recipes import load_recipe
from mrsisr.weights import save_weights

ROOT = Path(__file__).resolve().parents[1]


def one_error_line(res) -> str:
    """The output holds exactly one `error:` line and no traceback; return it."""
    lines = [l for l in res.output.splitlines() if l.startswith("error:")]
    assert len(lines) == 1, res.output
    assert "Traceback" not in res.output, res.output
    return lines[0]


def listing(path: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    pipe = load_recipe("ftddm", size="tiny").build()
    path = tmp_path_factory.mktemp("w") / "ftddm-tiny.safetensors"
    save_weights({k: m for k, (m, _) in pipeline_parts(pipe).items()}, path)
    return path


@pytest.fixture
def subject(cohort5, tmp_path):
    """A private copy of one phantom subject, with a sentinel file of the user's own."""
    src = sorted(p for p in cohort5.iterdir() if p.is_dir())[0]
    dst = tmp_path / "data" / src.name
    shutil.copytree(src, dst)
    (dst / "my-notes.txt").write_text("keep me")
    (dst.parent / "beside.txt").write_text("keep me too")
    return dst


def sr_args(weights, subject, out, *extra):
    return (
        "sr", "ftddm", "--size", "tiny", "--weights", str(weights), "--input", str(subject),
        "--scale", "4", "--steps", "2", "--metabolites", "NAA", "--out", str(out), *extra,
    )  # fmt: skip


# ------------------------------------------------------------------ data loss
@pytest.mark.parametrize("where", ["cwd", "input", "parent"])
def test_sr_overwrite_never_replaces_cwd_input_or_parent(
    cli, subject, tiny_weights, monkeypatch, where
):
    before_subject, before_parent = listing(subject), listing(subject.parent)
    monkeypatch.chdir(subject.parent)
    out = {"cwd": Path("."), "input": subject, "parent": subject.parent}[where]
    res = cli(*sr_args(tiny_weights, subject, out, "--overwrite"))
    assert res.exit_code == 2
    assert "refusing to write into the current folder, an input" in one_error_line(res)
    assert listing(subject) == before_subject and listing(subject.parent) == before_parent
    assert (subject / "my-notes.txt").read_text() == "keep me"
    assert (subject.parent / "beside.txt").read_text() == "keep me too"


def test_sr_overwrite_refuses_a_folder_it_did_not_write(cli, subject, tiny_weights, tmp_path):
    other = tmp_path / "photos"
    other.mkdir()
    (other / "holiday.jpg").write_bytes(b"\xff\xd8")
    res = cli(*sr_args(tiny_weights, subject, other, "--overwrite"))
    assert res.exit_code == 2
    assert "not an earlier output of mrsisr sr (no sr.json)" in one_error_line(res)
    assert (other / "holiday.jpg").read_bytes() == b"\xff\xd8"


def test_sr_overwrite_replaces_its_own_earlier_output(cli, subject, tiny_weights, tmp_path):
    out = tmp_path / "sr"
    assert cli(*sr_args(tiny_weights, subject, out)).exit_code == 0
    res = cli(*sr_args(tiny_weights, subject, out))
    assert res.exit_code == 2 and "pass --overwrite" in one_error_line(res)
    res = cli(*sr_args(tiny_weights, subject, out, "--overwrite"))
    assert res.exit_code == 0, res.output
    # the default --samples 4 adds the std map
    want = ["NAA.nii.gz", "NAA_lr.nii.gz", "NAA_std.nii.gz", "sr.json"]
    assert sorted(p.name for p in out.iterdir()) == want
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_sr_out_is_a_file(cli, subject, tiny_weights, tmp_path):
    f = tmp_path / "result.nii.gz"
    f.write_bytes(b"mine")
    res = cli(*sr_args(tiny_weights, subject, f, "--overwrite"))
    assert res.exit_code == 2 and "is a file, not a folder" in one_error_line(res)
    assert f.read_bytes() == b"mine"


def test_sr_unwritable_out_fails_before_any_work(cli, subject, tiny_weights):
    res = cli(*sr_args(tiny_weights, subject, "/proc/mrsisr-no/sr"))
    assert res.exit_code == 2 and "cannot write in /proc" in one_error_line(res)


def test_sr_full_disk_leaves_nothing_half_written(
    cli, subject, tiny_weights, tmp_path, monkeypatch
):
    import mrsisr.data.layout

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", "NAA.nii.gz")

    monkeypatch.setattr(mrsisr.data.layout, "write_nifti", full)
    res = cli(*sr_args(tiny_weights, subject, tmp_path / "sr"))
    assert res.exit_code == 2 and "No space left on device" in one_error_line(res)
    assert list(tmp_path.iterdir()) == [tmp_path / "data"]  # no output, no temporary folder


@pytest.mark.parametrize("scale", ["0", "nan", "-4", "3"])
def test_sr_bad_scale(cli, subject, tiny_weights, tmp_path, scale):
    args = list(sr_args(tiny_weights, subject, tmp_path / "sr"))
    args[args.index("--scale") + 1] = scale
    res = cli(*args)
    assert res.exit_code == 2 and f"--scale {scale}" in one_error_line(res)
    assert not (tmp_path / "sr").exists()


def test_unknown_device(cli, subject, tiny_weights, tmp_path):
    res = cli(*sr_args(tiny_weights, subject, tmp_path / "sr", "--device", "tpu"))
    assert res.exit_code == 2 and "--device tpu" in one_error_line(res)
    res = cli("bench", "--models", "ftddm", "--device", "tpu", "--out", str(tmp_path / "b"))
    assert res.exit_code == 2 and "--device tpu" in one_error_line(res)
    assert not (tmp_path / "b").exists()


def test_bench_and_study_refuse_a_foreign_folder(cli, tmp_path):
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "chapter1.tex").write_text("x")
    for cmd in (("bench", "--models", "ftddm"), ("study", "solver")):
        res = cli(*cmd, "--out", str(mine))
        assert res.exit_code == 2 and "is not an earlier output of mrsisr" in one_error_line(res)
    assert listing(mine) == {"chapter1.tex": b"x"}


def test_data_phantom_refuses_a_foreign_folder(cli, tmp_path):
    mine = tmp_path / "cohort"
    mine.mkdir()
    (mine / "sub-01").mkdir()
    res = cli("data", "phantom", "--out", str(mine), "--subjects", "1")
    assert res.exit_code == 2 and "no phantom.json" in one_error_line(res)
    assert [p.name for p in mine.iterdir()] == ["sub-01"]


# ------------------------------------------------------------------ training runs
def train_args(out, cohort, *extra, recipe="ddpm"):
    return (
        "train", recipe, "--size", "tiny", "--data", str(cohort), "--steps", "2", "--batch", "2",
        "--checkpoint-every", "1", "--val-batches", "0", "--out", str(out), *extra,
    )  # fmt: skip


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, cohort5):
    from typer.testing import CliRunner

    from mrsisr.cli import app

    out = tmp_path_factory.mktemp("runs") / "ddpm"
    res = CliRunner().invoke(app, list(train_args(out, cohort5)))
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture
def run_copy(finished_run, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(finished_run, dst)
    return dst


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"recipe": "ftddm"}, "recipe"),
        ({"--seed": "1"}, "seed"),
        ({"--batch": "3"}, "batch_size"),
        ({"--lr-schedule": "linear"}, "lr_schedule"),
    ],
)
def test_resume_refuses_another_run(cli, run_copy, cohort5, change, field):
    before = listing(run_copy)
    args = list(
        train_args(
            run_copy, cohort5, "--resume", "--steps", "3", recipe=change.get("recipe", "ddpm")
        )
    )
    for k, v in change.items():
        if k.startswith("--"):
            if k in args:
                args[args.index(k) + 1] = v
            else:
                args += [k, v]
    res = cli(*args)
    assert res.exit_code == 2
    assert f"the run was made with {field} = " in one_error_line(res)
    after = listing(run_copy)
    after.pop(".lock", None), before.pop(".lock", None)
    assert after == before  # weights, card and checkpoints untouched


def test_resume_names_the_recipe_key_that_changed(cli, run_copy, cohort5):
    res = cli(
        *train_args(run_copy, cohort5, "--resume", "--steps", "3", "--set", "sampler.tau_d=0.5")
    )
    assert res.exit_code == 2
    assert "the run was made with tables.sampler.tau_d = 0.9, not 0.5" in one_error_line(res)


def test_second_training_in_the_same_folder_is_refused(cli, run_copy, cohort5):
    with open(run_copy / ".lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a training that is still running
        res = cli(*train_args(run_copy, cohort5, "--resume", "--steps", "3"))
    assert res.exit_code == 2 and "another training is running" in one_error_line(res)


def test_train_refuses_a_foreign_folder(cli, cohort5, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "weights.safetensors").write_bytes(b"my own")
    res = cli(*train_args(mine, cohort5))
    assert res.exit_code == 2 and "is not a run folder" in one_error_line(res)
    assert (mine / "weights.safetensors").read_bytes() == b"my own"


@pytest.mark.parametrize("bad", ['"abc"', "-5", "1000000000", "true"])
def test_state_json_with_a_bad_step_is_refused(cli, run_copy, cohort5, bad):
    state = run_copy / "stages/denoiser/latest/state.json"
    state.write_text(state.read_text().replace('"step": 2', f'"step": {bad}', 1))
    card = (run_copy / "card.json").read_text()
    res = cli(*train_args(run_copy, cohort5, "--resume", "--steps", "4"))
    assert res.exit_code == 2
    assert "state.json: 'step'" in one_error_line(res)
    assert (run_copy / "card.json").read_text() == card


# ------------------------------------------------------------------ recipes and weights
@pytest.mark.parametrize("override", ["denoiser.num_heads=0", "denoiser.model_channels=-8"])
def test_recipe_values_a_constructor_rejects(cli, override):
    res = cli("info", "ftddm", "--size", "tiny", "--set", override)
    assert res.exit_code == 2 and "[denoiser] type 'unet' rejected its arguments" in one_error_line(
        res
    )


def test_non_utf8_recipe(cli, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b'[recipe]\nname = "caf\xe9"\n')
    res = cli("recipe", "check", str(bad))
    assert res.exit_code == 2 and "not UTF-8 text" in one_error_line(res)


@pytest.mark.parametrize(
    ("card", "field"),
    [([], "JSON object"), ({"resolved_recipe": {"pipeline": {"t_start": "abc"}}}, "t_start")],
)
def test_weights_card_with_a_wrong_structure(cli, cohort5, tiny_weights, tmp_path, card, field):
    import mrsisr

    w = tmp_path / "w.safetensors"
    shutil.copy(tiny_weights, w)
    w.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match=field):
        mrsisr.load("ftddm", size="tiny", weights=w)
    res = cli(*bench_args(cohort5, w, tmp_path / "b"))
    assert res.exit_code == 2 and field in one_error_line(res)
    assert not (tmp_path / "b").exists()


def bench_args(cohort, weights, out):
    return (
        "bench", "--models", "ftddm", "--size", "tiny", "--weights", f"ftddm={weights}",
        "--limit", "1", "--scales", "8", "--data", str(cohort), "--out", str(out),
    )  # fmt: skip


def test_corrupted_weights_are_caught_by_their_hash(cli, cohort5, tiny_weights, tmp_path):
    import mrsisr
    from mrsisr.weights import file_sha256

    w = tmp_path / "w.safetensors"
    shutil.copy(tiny_weights, w)
    w.with_suffix(".json").write_text(json.dumps({"sha256": file_sha256(w)}))
    mrsisr.load("ftddm", size="tiny", weights=w)  # intact: loads
    data = bytearray(w.read_bytes())
    data[-3] ^= 0xFF  # one flipped byte inside a tensor: safetensors alone would not notice
    w.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="do not match the SHA-256"):
        mrsisr.load("ftddm", size="tiny", weights=w)
    res = cli(*bench_args(cohort5, w, tmp_path / "b"))
    assert res.exit_code == 2 and "do not match the SHA-256" in one_error_line(res)
    assert not (tmp_path / "b").exists()


def test_every_shipped_card_has_a_hash_that_matches():
    from mrsisr.weights import file_sha256, weights_dir

    cards = sorted(weights_dir().rglob("*.json"))
    assert cards
    for card in cards:
        assert json.loads(card.read_text())["sha256"] == file_sha256(
            card.with_suffix(".safetensors")
        )


def test_names_that_reach_outside_the_zoo_are_refused(cli, tmp_path, finished_run):
    from mrsisr.zoo import export_run

    evil = tmp_path / "evil.toml"
    evil.write_text('[recipe]\nname = "../../x"\nbase = "ftddm"\n')
    res = cli("info", str(evil))
    assert res.exit_code == 2 and "is not a plain name" in one_error_line(res)
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    card = json.loads((run / "card.json").read_text())
    (run / "card.json").write_text(json.dumps(dict(card, recipe="../X")))
    dest = tmp_path / "dest"
    with pytest.raises(CheckpointError, match="not a plain name"):
        export_run(run, dest=dest)
    assert not (tmp_path / "X-tiny.safetensors").exists() and not dest.exists()


# ------------------------------------------------------------------ data folders
def test_map_that_is_a_folder_or_a_dangling_link_is_reported(cli, subject):
    shutil.move(subject / "NAA.nii.gz", subject / "NAA.keep")
    (subject / "NAA.nii.gz").mkdir()
    os.symlink(subject / "nowhere.nii.gz", subject / "Gly.nii.gz.tmp")
    (subject / "Gly.nii.gz").unlink()
    os.rename(subject / "Gly.nii.gz.tmp", subject / "Gly.nii.gz")
    shutil.copy(subject / "tCho.nii.gz", subject / "Lac.nii.gz")
    res = cli("data", "check", str(subject))
    assert res.exit_code == 2
    assert "NAA.nii.gz: is a folder, not a NIfTI file" in res.output
    assert "Gly.nii.gz: is a broken symbolic link" in res.output
    assert "note:" in res.output and "Lac.nii.gz: not used" in res.output


@pytest.mark.parametrize(("value", "words"), [(np.nan, "NaN or infinite"), (0.0, "singular")])
def test_nan_or_singular_affine_is_named(cli, subject, value, words):
    img = nib.load(subject / "tCho.nii.gz")
    aff = img.affine.copy()
    aff[:3, :3] = value
    bad = nib.Nifti1Image(np.asarray(img.dataobj), None)
    bad.header.set_sform(aff, code=2)  # nibabel would refuse to build a qform from it
    nib.save(bad, subject / "tCho.nii.gz")
    res = cli("data", "check", str(subject))
    assert (
        res.exit_code == 2
        and f"tCho.nii.gz: the header's affine {'has' if value else 'is'}" in res.output
    )
    assert words in res.output and "Warning" not in res.output


def test_data_check_on_a_subject_folder_without_maps(cli, subject):
    for met in subject.glob("*.nii.gz"):
        if met.name not in ("mask.nii.gz", "T1.nii.gz", "FLAIR.nii.gz"):
            met.unlink()
    res = cli("data", "check", str(subject))
    assert res.exit_code == 2
    assert "no metabolite maps found" in res.output and "no subject folders" not in res.output


# ------------------------------------------------------------------ plugins
def fake_distribution(site: Path) -> None:
    """Install by hand a distribution whose entry points are all broken in different ways."""
    info = site / "badplugins-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: badplugins\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        textwrap.dedent(
            """
            [mrsisr.recipes]
            missing_file = badplugins_mod:MISSING
            not_a_path = badplugins_mod:NUMBER

            [mrsisr.samplers]
            exits = badplugins_exit:Thing
            """
        )
    )
    (site / "badplugins_mod.py").write_text("MISSING = '/nonexistent/recipe.toml'\nNUMBER = 42\n")
    (site / "badplugins_exit.py").write_text("import sys\nsys.exit(0)\n")


def test_broken_plugins_do_not_take_the_cli_down(tmp_path):
    fake_distribution(tmp_path / "site")
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), str(ROOT)]), COLUMNS="200"
    )
    out = subprocess.run(
        [sys.executable, "-m", "mrsisr", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    warnings = [l for l in out.stderr.splitlines() if l.startswith("warning:")]
    assert len(warnings) == 3, out.stderr
    assert any("missing_file" in w and "not found" in w for w in warnings)
    assert any("not_a_path" in w and "not int" in w for w in warnings)
    assert any("exits" in w and "SystemExit" in w for w in warnings)
    assert "ftddm" in out.stdout and "ancestral" in out.stdout  # the listing went on
