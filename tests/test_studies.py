"""`mrsisr study`: every study runs at tiny size (random weights) and writes its table and figure."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_zoo import synthetic_batch

from mrsisr.eval.studies import ConditionedScale
from mrsisr.recipes import load_recipe
from mrsisr.registries import SAMPLERS, STUDIES

COMMON = ["--size", "tiny", "--untrained", "--limit", "1", "--scales", "8"]


def _run(cli, cohort5, tmp_path, name, *extra):
    res = cli("study", name, *COMMON, "--data", str(cohort5), "--out", str(tmp_path), *extra)
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / f"{name}.json").read_text())
    assert (tmp_path / f"{name}.csv").is_file()
    assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    for r in data["rows"]:  # every row's per-map scores, with the maps they belong to
        entry = data["scores"][f"{r['variant']}@{r['scale']}"]
        assert len(entry["maps"]) == len(entry["ssim"]) == r["n_maps"]
        assert np.mean(entry["ssim"]) == pytest.approx(r["ssim_mean"])
    return {r["variant"]: r for r in data["rows"]}


@pytest.mark.slow  # the DDPM-1000 reference; the default run covers the rest with --skip-slow
def test_truncation_study_has_the_ddpm_1000_reference(cli, cohort5, tmp_path):
    rows = _run(cli, cohort5, tmp_path, "truncation", "--steps", "5")
    assert rows["ddpm-1000"]["nfe"] == 1000 and rows["ddpm-1000"]["method"] == "ddpm"


def test_truncation_study(cli, cohort5, tmp_path):
    rows = _run(cli, cohort5, tmp_path, "truncation", "--steps", "10,5", "--skip-slow")
    nfe = {k: r["nfe"] for k, r in rows.items()}
    assert nfe == {
        "respace-10": 10,
        "dpm_solver_pp-10": 10,
        "tdpm-10": 11,
        "ftddm-10": 11,
        "respace-5": 5,
        "dpm_solver_pp-5": 5,
        "tdpm-5": 6,
        "ftddm-5": 6,
        "lr_input": 0,
    }
    assert rows["ftddm-5"]["method"] == "ftddm" and rows["ftddm-5"]["steps"] == 5
    # FTDDM and TDPM at K steps are the models truncated at K (here untrained), not a respaced
    # T_trunc = 100 chain; the DDPM rows run from T
    assert rows["ftddm-5"]["t_trunc"] == 5 and rows["tdpm-10"]["t_trunc"] == 10
    assert rows["respace-5"]["t_trunc"] == 1000
    config = json.loads((tmp_path / "truncation.json").read_text())["config"]
    assert config["batch"] == 16 and config["channels_last"] is True  # the CPU defaults, as bench


def _tiny_weights(path, t_start, seed):
    """Random tiny FTDDM weights with a card saying which x_t their flow draws."""
    from mrsisr.pipelines import pipeline_parts
    from mrsisr.weights import save_weights

    torch.manual_seed(seed)
    pipe = load_recipe("ftddm", size="tiny").build()
    save_weights({k: m for k, (m, _) in pipeline_parts(pipe).items()}, path)
    card = {"resolved_recipe": {"pipeline": {"t_start": t_start}}}
    path.with_suffix(".json").write_text(json.dumps(card))
    return pipe


def test_t_trunc_pipeline_pairs_the_unet_with_an_initializer_for_that_step(tmp_path):
    from mrsisr.errors import CheckpointError, MrsisrError
    from mrsisr.eval.studies import StudyConfig
    from mrsisr.eval.studies.truncation import t_trunc_pipeline

    unet = _tiny_weights(tmp_path / "w100.safetensors", 100, seed=1)
    flow5 = _tiny_weights(tmp_path / "w5.safetensors", 5, seed=2)
    weights = {
        "ftddm": str(tmp_path / "w100.safetensors"),
        "ftddm-t5": str(tmp_path / "w5.safetensors"),
    }
    cfg = StudyConfig(size="tiny", weights=weights, progress=False)
    pipe = t_trunc_pipeline(cfg, "ftddm", 5)
    assert pipe.t_start == 5 and pipe.nfe == 1 + 5  # the flow's draw, then the whole chain
    same = lambda a, b: all(  # noqa: E731
        torch.allclose(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values())
    )
    assert same(pipe.denoiser, unet.denoiser) and not same(pipe.denoiser, flow5.denoiser)
    assert same(pipe.initializer, flow5.initializer)
    assert pipe.initializer.tau_f == load_recipe("ftddm", size="tiny").build().initializer.tau_f
    # a temperature calibrated for this flow (calibrate_tau.py --record) is taken from its card,
    # unless the caller sets one
    card = json.loads((tmp_path / "w5.json").read_text())
    (tmp_path / "w5.json").write_text(json.dumps({**card, "tau_f": 0.29}))
    assert t_trunc_pipeline(cfg, "ftddm", 5).initializer.tau_f == 0.29
    told = t_trunc_pipeline(cfg, "ftddm", 5, {"initializer": {"tau_f": 0.7}})
    assert told.initializer.tau_f == 0.7

    # an initializer trained for another step is refused, naming the file
    wrong = StudyConfig(size="tiny", weights={**weights, "ftddm-t5": weights["ftddm"]})
    with pytest.raises(CheckpointError, match="w100.safetensors.*t_start=100"):
        t_trunc_pipeline(wrong, "ftddm", 5)
    # a given file that does not exist is an error, not a silent fallback
    missing = StudyConfig(size="tiny", weights={**weights, "ftddm-t5": str(tmp_path / "nope")})
    with pytest.raises(CheckpointError, match="ftddm-t5=.*nope: no such file"):
        t_trunc_pipeline(missing, "ftddm", 5)
    # none shipped for this step: None (the study falls back to a labelled respaced row)
    assert t_trunc_pipeline(StudyConfig(size="tiny", weights=weights), "ftddm", 7) is None
    with pytest.raises(MrsisrError, match="t <= 100"):
        t_trunc_pipeline(cfg, "ftddm", 200)


def test_t_trunc_pipeline_loads_a_tdpm_generator_saved_without_its_discriminator(tmp_path):
    """A TDPM run keeps the generator, not the critic: its truncation file is the generator."""
    from mrsisr.eval.studies import StudyConfig
    from mrsisr.eval.studies.truncation import t_trunc_pipeline
    from mrsisr.weights import initializer_parts, save_weights

    torch.manual_seed(3)
    tdpm = load_recipe("tdpm", size="tiny").build()
    assert initializer_parts(tdpm) == ["generator"]
    save_weights({"denoiser": tdpm.denoiser}, tmp_path / "unet.safetensors")
    save_weights({"generator": tdpm.initializer.generator}, tmp_path / "g5.safetensors")
    (tmp_path / "g5.json").write_text(json.dumps({"resolved_recipe": {"pipeline": {"t_start": 5}}}))
    cfg = StudyConfig(
        size="tiny",
        weights={
            "tdpm": str(tmp_path / "unet.safetensors"),
            "tdpm-t5": str(tmp_path / "g5.safetensors"),
        },
    )
    pipe = t_trunc_pipeline(cfg, "tdpm", 5)
    want = tdpm.initializer.generator.state_dict()
    assert all(torch.equal(v, want[k]) for k, v in pipe.initializer.generator.state_dict().items())


def test_solver_study(cli, cohort5, tmp_path):
    rows = _run(cli, cohort5, tmp_path, "solver")
    nfe = {k: r["nfe"] for k, r in rows.items() if k != "lr_input"}
    assert nfe == {  # every valid (T_trunc, solver steps) pair of Table 4: 1 + steps each
        "ftddm-ancestral-100": 101,
        "ftddm-dpm_solver_pp-50": 51,
        "ftddm-dpm_solver_pp-20": 21,
        "ftddm-dpm_solver_pp-10": 11,
        "ftddm-t50-ancestral-50": 51,
        "ftddm-t50-dpm_solver_pp-20": 21,
        "ftddm-t50-dpm_solver_pp-10": 11,
        "ftddm-t20-ancestral-20": 21,
        # 10 log-SNR steps within 20 integer timesteps share some: the sampler says how many
        "ftddm-t20-dpm_solver_pp-10": 1 + SAMPLERS.build("dpm_solver_pp", steps=10).nfe(20),
    }
    assert rows["ftddm-t50-dpm_solver_pp-20"]["t_trunc"] == 50
    assert rows["ftddm-ancestral-100"]["p_ssim"] is None  # the reference


@pytest.mark.slow  # ConditionedScale itself is tested below in the default run
def test_scale_study(cli, cohort5, tmp_path):
    rows = _run(cli, cohort5, tmp_path, "scale")
    told = sorted(r["conditioned_scale"] for r in rows.values() if r["conditioned_scale"])
    assert told == pytest.approx([2.0, 64 / 24, 4.0, 64 / 12, 8.0], abs=1e-3)
    assert [k for k, r in rows.items() if r.get("matches_actual")] == ["ftddm-s8.00"]


@pytest.mark.slow  # LPIPS itself is tested in test_perceptual
def test_sharpness_study_scores_lpips(cli, cohort5, tmp_path, lpips_installed):
    rows = _run(cli, cohort5, tmp_path, "sharpness")
    assert sorted(r["tau_d"] for r in rows.values() if r["tau_d"] is not None) == [
        0,
        0.3,
        0.6,
        0.9,
        1.0,
    ]
    for r in rows.values():
        assert r["lpips_alex_mean"] >= 0 and r["lpips_vgg_mean"] >= 0


def test_conditioned_scale_changes_what_the_network_is_told():
    torch.manual_seed(0)
    pipe = (
        load_recipe("ftddm", size="tiny", overrides={"sampler.type": "respace", "sampler.steps": 3})
        .build()
        .eval()
    )
    with torch.no_grad():  # zero-initialised output layers would hide the s-embedding's effect
        for p in pipe.denoiser.parameters():
            if p.abs().max() == 0:
                p.normal_(0, 0.1)
    batch = synthetic_batch(2)
    outs = [
        ConditionedScale(pipe, s).sample(batch.cond, generator=torch.Generator().manual_seed(0))
        for s in (2.0, 8.0)
    ]
    assert not torch.allclose(outs[0], outs[1])
    same = ConditionedScale(pipe, 4.0).sample(
        batch.cond, generator=torch.Generator().manual_seed(0)
    )
    plain = pipe.sample(batch.cond, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(same, plain)  # synthetic_batch is at x4


def test_study_errors(cli, tmp_path):
    res = cli("study", "nope", "--out", str(tmp_path))
    assert res.exit_code == 2 and "truncation" in res.output
    res = cli("study", "solver", "--size", "tiny", "--out", str(tmp_path / "x"))
    assert res.exit_code == 2 and "needs 'tiny' weights for ftddm" in res.output
    assert not (tmp_path / "x").exists()
    assert set(STUDIES.names()) == {
        "truncation",
        "solver",
        "scale",
        "sharpness",
        "ablation",
        "consistency",
    }
    res = cli("study", "ablation", "--size", "tiny", "--out", str(tmp_path / "y"))
    assert res.exit_code == 2 and "ablation study needs 'tiny' weights" in res.output
    assert not (tmp_path / "y").exists()


@pytest.mark.slow  # its diffusion_only variant is a 1000-step chain
def test_ablation_study(cli, cohort5, tmp_path):
    rows = _run(cli, cohort5, tmp_path, "ablation")
    assert list(rows) == [
        "ftddm",
        "flow_only",
        "diffusion_only",
        "no_mask",
        "no_mri",
        "no_mask_flow",
        "no_mri_flow",
        "no_guide",
        "lr_input",
    ]
    assert {k: r["nfe"] for k, r in rows.items()} == {
        "ftddm": 101,
        "flow_only": 1,
        "diffusion_only": 1000,
        "no_mask": 101,
        "no_mri": 101,
        "no_mask_flow": 101,
        "no_mri_flow": 101,
        "no_guide": 101,
        "lr_input": 0,
    }
    assert rows["ftddm"]["p_ssim"] is None and rows["no_mask"]["p_ssim"] is not None
    assert (rows["no_mask"]["mask"], rows["no_mri"]["mri"], rows["no_guide"]["guide"]) == (
        False,
        False,
        False,
    )
    assert rows["flow_only"]["tables"] == "2" and rows["ftddm"]["tables"] == "2,3"
    assert rows["flow_only"]["params"] < rows["no_mask"]["params"]
    assert not rows["no_mask"]["unet_mask"] and rows["no_mask_flow"]["unet_mask"]
    assert rows["flow_only"]["unet_mask"] is None and rows["diffusion_only"]["mask"] is None
    assert not rows["no_mri"]["unet_mri"] and rows["no_mri_flow"]["unet_mri"]


def test_ablation_variant_pairs_ftddm_denoiser_with_its_own_flow(tmp_path):
    from mrsisr.eval.studies import StudyConfig
    from mrsisr.eval.studies.ablation import ablation_pipeline
    from mrsisr.weights import save_weights

    torch.manual_seed(0)
    ftddm = load_recipe("ftddm", size="tiny").build()
    variant = load_recipe(
        "ftddm",
        size="tiny",
        overrides={"initializer.mask_channel": False, "initializer.flow.cond_channels": 3},
    ).build()
    save_weights({"denoiser": ftddm.denoiser, "flow": ftddm.initializer.flow}, tmp_path / "f.st")
    save_weights({"flow": variant.initializer.flow}, tmp_path / "v.st")
    cfg = StudyConfig(
        size="tiny",
        weights={"ftddm": str(tmp_path / "f.st"), "no_mask_flow": str(tmp_path / "v.st")},
    )
    pipe = ablation_pipeline(cfg, "no_mask_flow")
    for got, want in (
        (pipe.denoiser, ftddm.denoiser),
        (pipe.initializer.flow, variant.initializer.flow),
    ):
        w = want.state_dict()
        assert all(torch.equal(v, w[k]) for k, v in got.state_dict().items())


def test_shipped_table3_variant_takes_the_flow_of_its_twin(tmp_path, monkeypatch):
    """Shipped `no_mask`: its own UNet, and the flow of `no_mask_flow` (trained like FTDDM's)."""
    from mrsisr.eval.studies import StudyConfig
    from mrsisr.eval.studies import ablation as abl
    from mrsisr.weights import save_weights

    torch.manual_seed(0)
    ab = abl.ABLATIONS["no_mask"]
    own = load_recipe("ftddm", size="tiny", overrides=ab.overrides).build()
    twin = load_recipe("ftddm", size="tiny", overrides=ab.overrides).build()
    save_weights({"denoiser": own.denoiser, "flow": own.initializer.flow}, tmp_path / "no_mask.st")
    save_weights({"flow": twin.initializer.flow}, tmp_path / "no_mask_flow.st")
    monkeypatch.setattr(abl, "ablation_weights_path", lambda v, size: tmp_path / f"{v}.st")
    pipe = abl.ablation_pipeline(StudyConfig(size="tiny"), "no_mask")
    for got, want in (
        (pipe.denoiser, own.denoiser),
        (pipe.initializer.flow, twin.initializer.flow),
    ):
        w = want.state_dict()
        assert all(torch.equal(v, w[k]) for k, v in got.state_dict().items())
    assert not all(
        torch.equal(v, own.initializer.flow.state_dict()[k])
        for k, v in pipe.initializer.flow.state_dict().items()
    )
    # without the twin's file the variant is left out, not run with the file's own flow
    (tmp_path / "no_mask_flow.st").unlink()
    cfg = StudyConfig(size="tiny", weights={"ftddm": str(tmp_path / "no_mask.st")})
    assert abl._check_ablation_weights(cfg, ["no_mask"]) == []


def test_table3_variants_drop_the_ingredient_from_unet_and_flow(tmp_path, capsys):
    """`no_mask` / `no_mri` are the paper's Table 3: their own UNet and flow both go without."""
    from mrsisr.errors import CheckpointError
    from mrsisr.eval.studies import StudyConfig
    from mrsisr.eval.studies.ablation import ABLATIONS, _check_ablation_weights, ablation_pipeline
    from mrsisr.weights import save_weights

    torch.manual_seed(0)
    for name, flags in (("no_mask", ("use_mask", "mask")), ("no_mri", ("use_mri", "mri"))):
        ab = ABLATIONS[name]
        variant = load_recipe("ftddm", size="tiny", overrides=ab.overrides).build()
        parts = {"denoiser": variant.denoiser, "flow": variant.initializer.flow}
        save_weights(parts, tmp_path / f"{name}.st")
        cfg = StudyConfig(size="tiny", weights={name: str(tmp_path / f"{name}.st")})
        pipe = ablation_pipeline(cfg, name)
        assert getattr(pipe.denoiser, flags[0]) is False
        assert pipe.denoiser.in_channels == variant.denoiser.in_channels < 5
        w = variant.state_dict()
        assert all(torch.equal(v, w[k]) for k, v in pipe.state_dict().items())
        # a flow-only file (FTDDM's UNet) is not this variant
        save_weights({"flow": variant.initializer.flow}, tmp_path / "flow.st")
        with pytest.raises(CheckpointError, match="no weights for part 'denoiser'"):
            ablation_pipeline(
                StudyConfig(size="tiny", weights={name: str(tmp_path / "flow.st")}), name
            )
    # variants without weights (none are shipped at tiny size) are left out with a note;
    # FTDDM's own, which the flow variants pair with, are required
    cfg = StudyConfig(size="tiny", weights={"ftddm": str(tmp_path / "no_mask.st")})
    kept = _check_ablation_weights(cfg, ["ftddm", "no_mask", "no_mask_flow"])
    assert kept == ["ftddm"] and "variant 'no_mask' (ftddm-no_mask-tiny" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="no_mask_flow \\(ftddm weights\\)"):
        _check_ablation_weights(StudyConfig(size="tiny"), ["ftddm", "no_mask_flow"])


def test_diffusion_only_is_the_scale_conditioned_unet_on_the_whole_chain(tmp_path):
    """Table 2's "diffusion only": FTDDM's UNet (with the s-embedding) over T = 1000, its own weights."""
    from mrsisr.errors import CheckpointError
    from mrsisr.eval.studies import StudyConfig
    from mrsisr.eval.studies.ablation import ablation_pipeline
    from mrsisr.weights import save_weights

    torch.manual_seed(0)
    ddpm = load_recipe("ddpm", size="tiny").build()
    grown = load_recipe("ddpm", size="tiny", overrides={"denoiser.use_scale": True}).build()
    save_weights({"denoiser": grown.denoiser}, tmp_path / "d.st")
    save_weights({"denoiser": ddpm.denoiser}, tmp_path / "ddpm.st")
    pipe = ablation_pipeline(
        StudyConfig(size="tiny", weights={"diffusion_only": str(tmp_path / "d.st")}),
        "diffusion_only",
    )
    assert pipe.t_start == 1000 and pipe.denoiser.use_scale
    w = grown.denoiser.state_dict()
    assert all(torch.equal(v, w[k]) for k, v in pipe.denoiser.state_dict().items())
    with pytest.raises(CheckpointError, match="does not fit"):  # plain DDPM has no s-embedding
        ablation_pipeline(
            StudyConfig(size="tiny", weights={"diffusion_only": str(tmp_path / "ddpm.st")}),
            "diffusion_only",
        )


def test_ablation_refuses_a_flow_trained_without_the_variant_overrides(tmp_path):
    from mrsisr.errors import CheckpointError
    from mrsisr.eval.studies import StudyConfig
    from mrsisr.eval.studies.ablation import ablation_pipeline
    from mrsisr.weights import save_weights

    recipe = load_recipe("ftddm", size="tiny")
    pipe = recipe.build()
    run = tmp_path / "full-ftddm-run"
    run.mkdir()
    save_weights({"flow": pipe.initializer.flow}, run / "weights.safetensors")
    (run / "card.json").write_text(json.dumps({"resolved_recipe": recipe.to_dict()}))
    cfg = StudyConfig(size="tiny", untrained=True, weights={"no_guide": str(run)})
    with pytest.raises(
        CheckpointError, match=r"guide_weight = 10.0.*--set initializer.guide_weight=0"
    ):
        ablation_pipeline(cfg, "no_guide")


def test_interrupted_study_resumes_from_the_rows_it_scored(cli, cohort5, tmp_path, monkeypatch):
    import mrsisr.eval.runner as runner
    from mrsisr.eval.studies import partial_path

    real, calls = runner.evaluate, []

    def dies_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the user's Ctrl-C in the middle of the study
        return real(*args, **kwargs)

    out = tmp_path / "study"
    monkeypatch.setattr(runner, "evaluate", dies_on_third)
    cli("study", "truncation", *COMMON, "--data", str(cohort5), "--steps", "2", "--skip-slow",
        "--out", str(out))  # fmt: skip
    assert len(calls) == 3 and not (out / "truncation.json").exists()
    partial = json.loads(partial_path(out, "truncation").read_text())
    assert len(partial["entries"]) == 2  # the two rows scored before the interruption

    calls.clear()
    rows = _run(cli, cohort5, out, "truncation", "--steps", "2", "--skip-slow")
    assert len(calls) == 4 - 2  # only the rows still missing are sampled
    assert partial_path(out, "truncation").exists()  # kept: a later run reads every row back
    calls.clear()
    again = _run(cli, cohort5, out, "truncation", "--steps", "2", "--skip-slow")
    assert len(calls) == 0 and again == rows
    monkeypatch.setattr(runner, "evaluate", real)
    fresh = _run(cli, cohort5, tmp_path / "fresh", "truncation", "--steps", "2", "--skip-slow")
    for k, r in fresh.items():
        assert rows[k]["ssim_mean"] == pytest.approx(r["ssim_mean"], abs=1e-6), k
        assert rows[k]["nfe"] == r["nfe"]


def test_line_plot_draws_the_reference_as_a_line_not_a_point(tmp_path, monkeypatch):
    """Fig. 5's DDPM-1000 is a dashed level, so the NFE axis stays at the fast samplers' range."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mrsisr.eval.figures import line_plot
    from mrsisr.eval.studies import StudyResult

    def row(variant, method, nfe, ssim):
        return {"variant": variant, "method": method, "nfe": nfe, "scale": 4, "n_maps": 3,
                "ssim_mean": ssim, "psnr_mean": 20 + ssim}  # fmt: skip

    rows = [
        row("a-10", "a", 10, 0.8),
        row("a-20", "a", 20, 0.85),
        row("ddpm-1000", "ddpm", 1000, 0.9),
    ]
    result = StudyResult("truncation", rows, {"size": "tiny", "data": "phantom"}, "cpu")
    figs = []
    monkeypatch.setattr(plt.Figure, "savefig", lambda self, *a, **k: figs.append(self))
    line_plot(result, tmp_path / "x.png", x="nfe", ys=["ssim"], group="method", xlabel="NFE",
              reference="ddpm")  # fmt: skip
    (ax,) = figs[0].axes
    assert ax.get_xlim()[1] < 100  # no point at NFE 1000
    levels = [ln.get_ydata()[0] for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert levels == [0.9]
    assert any("ddpm-1000 (3 maps)" == t.get_text() for t in ax.get_legend().get_texts())
