"""Data consistency: the measured k-space block is kept exactly, for every sampler and pipeline."""

from __future__ import annotations

import pytest
import torch

from mrsisr.consistency import (
    KSpaceConsistency,
    ProjectedDenoiser,
    measured_block_error,
)
from mrsisr.data.degrade import kspace_lowres
from mrsisr.kspace import fft2c as centred_fft
from mrsisr.kspace import ifft2c as centred_ifft
from mrsisr.kspace import scale_block_mask as kspace_block_mask
from mrsisr.recipes import load_recipe
from mrsisr.registries import CONSISTENCY, SAMPLERS
from mrsisr.schedules import CosineSchedule
from mrsisr.types import Condition


def condition(x: torch.Tensor, scale: float, mask: torch.Tensor | None = None) -> Condition:
    b = x.shape[0]
    ones = torch.ones_like(x)
    lr = kspace_lowres(x, int(64 / scale))  # the protocol: magnitude of the truncated image
    return Condition(ones if mask is None else mask, lr, ones, ones, torch.full((b,), scale))


@pytest.mark.parametrize("scale", [8.0, 4.0, 2.0])
def test_full_grid_projection_matches_the_measured_block_exactly(scale):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 64, 64, generator=g, dtype=torch.float64)
    cond = condition(x, scale)
    guess = torch.rand(3, 1, 64, 64, generator=g, dtype=torch.float64)
    y = KSpaceConsistency(clamp=False, magnitude=False).project(guess, cond)
    block = kspace_block_mask(cond.scale, 64)
    diff = (centred_fft(y) - centred_fft(cond.lr))[block].abs().max()
    assert float(diff) < 1e-12
    assert float(measured_block_error(y, cond).max()) < 1e-12
    # only the block changed: outside it the guess's spectrum is untouched (up to the mirror
    # of the edge row, which the real part couples to it)
    outside = ~(block | torch.roll(torch.flip(block, (-2, -1)), (1, 1), (-2, -1)))
    assert float((centred_fft(y) - centred_fft(guess))[outside].abs().max()) < 1e-12


def test_projection_is_idempotent_with_and_without_a_mask():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 1, 64, 64, generator=g, dtype=torch.float64)
    guess = torch.rand(2, 1, 64, 64, generator=g, dtype=torch.float64)
    p = KSpaceConsistency(use_mask=False, clamp=False, magnitude=False)
    cond = condition(x, 4.0)
    once = p.project(guess, cond)
    torch.testing.assert_close(p.project(once, cond), once, rtol=0, atol=1e-12)


def test_quality_mask_keeps_the_block_to_a_measured_tolerance(cohort5):
    """With a quality mask the mask step comes last; the residual is small and shrinks with
    iterations (the alternating projections converge)."""
    from mrsisr.data import MRSIDataset, collate, load_dataset

    # real phantom maps: zero outside their masks, so a consistent answer inside the mask exists
    data = MRSIDataset(load_dataset(cohort5)[:1], lr_size=16)
    batch = collate([data[i] for i in range(0, len(data), max(1, len(data) // 8))][:8]).to("cpu")
    cond = batch.cond
    guess = torch.zeros_like(batch.x0)
    errors = [
        float(
            measured_block_error(KSpaceConsistency(iterations=k).project(guess, cond), cond).mean()
        )
        for k in (1, 4, 16)
    ]
    assert errors[0] < 0.35 and errors[2] < errors[1] < errors[0]
    # the ground truth itself is within the magnitude detail of the LR map ...
    assert float(measured_block_error(batch.x0, cond).mean()) < 0.2
    # ... and a fixed point of the magnitude-aware projection
    fixed = KSpaceConsistency(magnitude=True).project(batch.x0.double(), cond)
    torch.testing.assert_close(fixed, batch.x0.double(), rtol=0, atol=1e-6)


class Oracle(torch.nn.Module):
    """Exact posterior-mean ε for x0 = c + sigma * Q z: c lies in the measured block, Q z has no
    component there (nor at the block's mirror), so every draw is consistent with the data."""

    def __init__(self, c, q, sigma, schedule):
        super().__init__()
        self.c, self.q, self.sigma, self.schedule = c, q, sigma, schedule

    def forward(self, x_t, t, cond):
        g = self.schedule.gammas[t.long().cpu()].view(-1, 1, 1, 1).to(x_t)
        a, b = g.sqrt(), (1 - g).sqrt()
        high = centred_ifft(centred_fft(x_t - a * self.c) * self.q).real
        x0 = self.c + self.sigma**2 * a / (a**2 * self.sigma**2 + b**2) * high
        return (x_t - a * x0) / b


def consistent_law(scale: float):
    n, size = 64, int(64 / scale)
    s = torch.full((1,), scale)
    block = kspace_block_mask(s, n)
    mirror = torch.roll(torch.flip(block, (-2, -1)), (1, 1), (-2, -1))
    q = (~(block | mirror)).double()  # frequencies that neither the block nor its mirror touch
    g = torch.Generator().manual_seed(3)
    c = centred_ifft(
        centred_fft(torch.rand(1, 1, n, n, generator=g, dtype=torch.float64)) * (block & mirror)
    ).real
    return c, q, size


@pytest.mark.parametrize("sampler", ["ancestral", "respace", "dpm_solver_pp"])
def test_oracle_law_is_unchanged_when_the_data_are_consistent(sampler):
    from mrsisr.initializers.gaussian import GaussianInitializer
    from mrsisr.pipelines import DiffusionPipeline

    schedule = CosineSchedule()
    c, q, _ = consistent_law(4.0)
    oracle = Oracle(c, q, 0.3, schedule)
    kw = {"steps": 10} if sampler != "ancestral" else {}
    samp = SAMPLERS.build(sampler, **kw)
    ones = torch.ones(4, 1, 64, 64, dtype=torch.float64)
    cond = Condition(ones, c.expand(4, -1, -1, -1), ones, ones, torch.full((4,), 4.0))

    def run(consistency):
        pipe = DiffusionPipeline(
            schedule, GaussianInitializer(), oracle, samp, t_start=100, consistency=consistency
        )
        x = pipe.initializer.sample(cond, 100, schedule, generator=torch.Generator().manual_seed(0))
        den = (
            ProjectedDenoiser(oracle, consistency, schedule) if consistency is not None else oracle
        )
        return samp(den, x, 100, cond, schedule, generator=torch.Generator().manual_seed(1))

    plain = run(None)
    projected = run(KSpaceConsistency(use_mask=False, clamp=False, magnitude=False))
    torch.testing.assert_close(projected, plain, rtol=0, atol=1e-9)


@pytest.mark.parametrize("sampler", sorted(SAMPLERS.names()))
def test_every_registered_sampler_runs_with_it(sampler):
    kw = {} if sampler == "ancestral" else {"sampler.steps": 3}
    pipe = load_recipe(
        "ftddm",
        size="tiny",
        overrides={
            "consistency": {"type": "kspace", "iterations": 2},
            "sampler.type": sampler,
            **kw,
        },
    ).build()
    x = torch.rand(2, 1, 64, 64)
    cond = condition(x, 4.0)
    out = pipe.sample(cond, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 1, 64, 64) and torch.isfinite(out).all()
    # the answer keeps the measured block (up to the final clamp to [0, 1])
    assert float(measured_block_error(out, cond).max()) < 0.1


@pytest.mark.parametrize(
    ("recipe", "extra"),
    [
        ("munet_fs_cwgan", {}),
        ("flow_enhancer", {}),
        ("ftddm", {"pipeline.t_start": 0}),  # flow only
        ("ddpm", {"sampler.type": "respace", "sampler.steps": 3}),
    ],
)
def test_every_pipeline_takes_it_as_a_final_projection(recipe, extra):
    overrides = {"consistency": {"type": "kspace", "iterations": 8, "magnitude": False}, **extra}
    pipe = load_recipe(recipe, size="tiny", overrides=overrides).build().eval()
    x = torch.rand(2, 1, 64, 64)
    cond = condition(x, 2.0)
    out = pipe.sample(cond, generator=torch.Generator().manual_seed(0))
    err = float(measured_block_error(out, cond).max())
    plain = load_recipe(recipe, size="tiny", overrides=extra).build().eval()
    plain.load_state_dict(pipe.state_dict())
    base = float(
        measured_block_error(
            plain.sample(cond, generator=torch.Generator().manual_seed(0)), cond
        ).max()
    )
    assert err < 0.02 and err < base / 4  # random weights are far from the data; DC is not


def test_registry_and_recipe_validation():
    assert {"none", "kspace"} <= set(CONSISTENCY.names())
    with pytest.raises(Exception, match="iterations"):
        load_recipe(
            "ftddm", size="tiny", overrides={"consistency": {"type": "kspace", "iterations": 0}}
        ).build()
    with pytest.raises(Exception, match="unknown key 'iteration'"):
        load_recipe(
            "ftddm", size="tiny", overrides={"consistency": {"type": "kspace", "iteration": 2}}
        )


def test_consistency_study_pairs_each_model_with_its_dc_row(
    cli, cohort5, tmp_path, lpips_installed
):  # the study scores LPIPS too
    import json

    res = cli(
        "study", "consistency", "--size", "tiny", "--untrained", "--limit", "2", "--slow-limit", "1",
        "--scales", "8", "--models", "ftddm,munet_fs_cwgan", "--data", str(cohort5),
        "--out", str(tmp_path), "--batch", "1", "--channels-last",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "consistency.json").read_text())
    rows = {r["variant"]: r for r in data["rows"]}
    assert set(rows) == {
        "ftddm", "ftddm+dc", "ftddm+dcp", "munet_fs_cwgan", "munet_fs_cwgan+dc", "lr_input"
    }  # fmt: skip
    assert set(data["scores"]) == {f"{v}@8" for v in rows}  # per-map scores of every row
    assert data["scores"]["ftddm+dc@8"]["maps"] == data["scores"]["ftddm@8"]["maps"]
    assert rows["ftddm+dc"]["dc"] and not rows["ftddm"]["dc"]
    assert rows["ftddm+dcp"]["dc"] and rows["ftddm+dcp"]["phase"] and not rows["ftddm+dc"]["phase"]
    assert rows["ftddm+dc"]["p_ssim"] is not None and rows["ftddm"]["p_ssim"] is None
    assert rows["ftddm"]["n_maps"] == 2 and rows["munet_fs_cwgan+dc"]["recipe"] == "munet_fs_cwgan"
    for row in rows.values():  # the four metrics, LPIPS with both backbones
        assert all(row[f"{m}_mean"] is not None for m in ("ssim", "psnr", "nrmse", "lpips_alex"))
        assert row["lpips_vgg_mean"] is not None and row["lpips_vgg_mean"] >= 0
    assert (tmp_path / "consistency.png").read_bytes()[:4] == b"\x89PNG"
    assert data["config"]["batch"] == 1 and data["config"]["channels_last"] is True


def test_bench_labels_dc_rows(cli, cohort5, tmp_path):
    import json

    res = cli(
        "bench", "--models", "munet_fs_cwgan", "--consistency", "both", "--size", "tiny",
        "--untrained", "--limit", "1", "--scales", "8", "--data", str(cohort5), "--out", str(tmp_path / "b"),
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    models = [r["model"] for r in json.loads((tmp_path / "b/results.json").read_text())["rows"]]
    assert models[:2] == ["munet_fs_cwgan", "munet_fs_cwgan+dc"]
    from mrsisr.cli.zoo import with_consistency

    assert with_consistency(["a", "a+dcp"], "both") == ["a", "a+dc", "a+dcp"]
    assert with_consistency(["a", "a+dcp"], "kspace") == ["a+dc", "a+dcp"]
    res = cli("bench", "--models", "ftddm+xx", "--out", str(tmp_path / "c"))
    assert res.exit_code == 2 and "unknown suffix '+xx'" in res.output


def test_only_phase_rows_see_the_acquisition(cohort5):
    """`+dcp` rows get the protocol's complex truncated image as `cond.measured`; every other
    row (and the `+dc` rows) sees only the magnitude, as the protocol has it."""
    from mrsisr.eval.bench import run_bench
    from mrsisr.eval.models import split_variant
    from mrsisr.pipelines.one_step import OneStepPipeline

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.seen = []

        def forward(self, cond, lambda_adv=0.0, metabolite=None):
            self.seen.append(cond.measured)
            return cond.lr

    plain, dc, dcp = Recorder(), Recorder(), Recorder()
    models = [("a", OneStepPipeline(plain)), ("a+dc", OneStepPipeline(dc))]
    run_bench([*models, ("a+dcp", OneStepPipeline(dcp))], data=cohort5, limit=2, scales=(4,),
              progress=False, uq_samples=0)  # fmt: skip
    assert plain.seen and all(m is None for m in plain.seen + dc.seen)
    assert dcp.seen and all(m is not None and m.is_complex() for m in dcp.seen)
    assert split_variant("ftddm+dcp") == split_variant("ftddm+dc")  # same pipeline, other data
