"""Tests of the truncation-point initializers (flow, GAN, Gaussian) and their composition."""

from __future__ import annotations

import inspect
import math

import pytest
import torch

from mrsisr.backbones.discriminators import PatchCritic
from mrsisr.errors import RecipeError
from mrsisr.initializers.flow import FlowInitializer, guide_loss, masked_noisy_target
from mrsisr.initializers.gan import GANInitializer
from mrsisr.registries import BACKBONES, INITIALIZERS, SAMPLERS
from mrsisr.schedules import CosineSchedule
from mrsisr.types import Condition, Initializer

SIZE = 16
TINY_UNET = {
    "model_channels": 8,
    "channel_mult": (1, 2),
    "num_res_blocks": 1,
    "attention_resolutions": (8,),
    "num_heads": 2,
    "image_size": SIZE,
}
TINY_FLOW = {"width": 8, "blocks": (1, 1, 1, 1), "levels": 3, "image_size": SIZE}


def _batch(batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, Condition]:
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, SIZE), torch.linspace(-1, 1, SIZE), indexing="ij")
    mask = ((yy**2 + xx**2) < 0.8).float().expand(batch, 1, SIZE, SIZE).clone()
    x0 = torch.rand(batch, 1, SIZE, SIZE, generator=g) * mask
    t1 = torch.rand(batch, 1, SIZE, SIZE, generator=g)
    cond = Condition(mask=mask, lr=x0.clone(), t1=t1, flair=1 - t1, scale=torch.tensor([2.0, 4.0]))
    return x0, cond


def _perturb(module: torch.nn.Module, std: float) -> None:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(std * torch.randn(p.shape, generator=g))


class _AnalyticDenoiser(torch.nn.Module):
    """The exact eps-predictor when the data are a point mass at `cond.lr`."""

    def __init__(self, schedule: CosineSchedule) -> None:
        super().__init__()
        self.gammas = schedule.gammas

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: Condition) -> torch.Tensor:
        g = self.gammas[t.long()].to(x_t.dtype).view(-1, 1, 1, 1)
        return (x_t - g.sqrt() * cond.lr) / (1 - g).sqrt()


def _build_initializer(name: str) -> Initializer:
    """Build any registered initializer at tiny size (networks get tiny backbones)."""
    target = INITIALIZERS.get(name)
    params = inspect.signature(target).parameters
    kwargs = {}
    if "flow" in params:
        kwargs["flow"] = BACKBONES.build("conditional_flow", **TINY_FLOW)
    if "generator" in params:
        kwargs["generator"] = BACKBONES.build("unet", use_scale=False, **TINY_UNET)
    if "discriminator" in params:
        kwargs["discriminator"] = BACKBONES.build("patch_critic", width=8)
    init = INITIALIZERS.build(name, **kwargs)
    if isinstance(init, torch.nn.Module):
        _perturb(init, 0.02)  # leave the identity-like / zero initialisations
        init.eval()
    return init


def _build_sampler(name: str):
    params = inspect.signature(SAMPLERS.get(name)).parameters
    return SAMPLERS.build(name, **({"steps": 5} if "steps" in params else {}))


def test_flow_initializer_samples_masked_with_temperature() -> None:
    torch.manual_seed(0)
    init = _build_initializer("flow")
    _, cond = _batch()
    schedule = CosineSchedule()
    a = init.sample(cond, 100, schedule, generator=torch.Generator().manual_seed(1))
    b = init.sample(cond, 100, schedule, generator=torch.Generator().manual_seed(2))
    assert a.shape == (2, 1, SIZE, SIZE)
    assert (a[cond.mask == 0] == 0).all()
    assert not torch.allclose(a, b)
    cold = [
        init.sample(cond, 100, schedule, generator=torch.Generator().manual_seed(s), tau_f=0.0)
        for s in (1, 2)
    ]
    assert torch.equal(cold[0], cold[1])
    assert init.nfe == 1
    assert set(init.parts()) == {"flow"} and init.parts()["flow"][1] is True


def test_flow_loss_is_nll_plus_weighted_guide() -> None:
    torch.manual_seed(0)
    init = _build_initializer("flow")
    x0, cond = _batch()
    schedule = CosineSchedule()
    loss = init.loss(x0, cond, 100, schedule, generator=torch.Generator().manual_seed(3))
    x_t = masked_noisy_target(x0, cond.mask, 100, schedule, torch.Generator().manual_seed(3))
    nll = init.flow.nll_bits_per_dim(x_t, cond.channels()).mean()
    x_hat = init.flow.decode(init.flow.prior_mu.expand(2, -1), cond.channels()) * cond.mask
    expected = nll + 10.0 * guide_loss(x_hat, x0, alpha=0.84, guide_size=192)
    assert torch.allclose(loss, expected)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in init.parameters())


def test_masked_noisy_target_follows_q_sample() -> None:
    x0, cond = _batch()
    schedule = CosineSchedule()
    x_t = masked_noisy_target(x0, cond.mask, 100, schedule, torch.Generator().manual_seed(0))
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)) * cond.mask
    g = float(schedule.gammas[100])
    assert torch.allclose(x_t, math.sqrt(g) * x0 + math.sqrt(1 - g) * noise, atol=1e-6)
    assert (x_t[cond.mask == 0] == 0).all()


def test_guide_loss_is_zero_for_identical_maps() -> None:
    x0, _ = _batch()
    assert float(guide_loss(x0, x0)) == pytest.approx(0.0, abs=1e-6)
    assert float(guide_loss(torch.zeros_like(x0), x0)) > 0.1


def test_gan_one_discriminator_and_one_generator_step() -> None:
    torch.manual_seed(0)
    init = _build_initializer("gan")
    init.train()
    x0, cond = _batch()
    schedule = CosineSchedule()
    g_params = list(init.generator.parameters())
    d_params = list(init.discriminator.parameters())
    opt_g = torch.optim.Adam(g_params, lr=1e-3)
    opt_d = torch.optim.Adam(d_params, lr=1e-3)

    d_before = [p.detach().clone() for p in d_params]
    d_loss = init.discriminator_loss(x0, cond, 100, schedule, torch.Generator().manual_seed(0))
    opt_d.zero_grad()
    d_loss.backward()
    assert all(p.grad is None for p in g_params)  # fakes are drawn without a graph
    opt_d.step()
    assert any(not torch.equal(a, b) for a, b in zip(d_before, d_params, strict=True))

    g_before = [p.detach().clone() for p in g_params]
    g_loss = init.generator_loss(x0, cond, 100, schedule, torch.Generator().manual_seed(1))
    opt_g.zero_grad()
    g_loss.backward()
    opt_g.step()
    assert any(not torch.equal(a, b) for a, b in zip(g_before, g_params, strict=True))
    assert math.isfinite(d_loss.item()) and math.isfinite(g_loss.item())


def test_gan_r1_penalty_matches_definition() -> None:
    torch.manual_seed(0)
    init = _build_initializer("gan")
    x0, cond = _batch()
    schedule = CosineSchedule()
    init.r1_gamma = 1e4  # large enough for the difference to stand out of float32 rounding
    with_r1 = init.discriminator_loss(x0, cond, 100, schedule, torch.Generator().manual_seed(0))
    without = init.discriminator_loss(
        x0, cond, 100, schedule, torch.Generator().manual_seed(0), r1=False
    )
    real = masked_noisy_target(x0, cond.mask, 100, schedule, torch.Generator().manual_seed(0))
    real.requires_grad_(True)
    (grad,) = torch.autograd.grad(init.discriminator(real, cond).sum(), real)
    var = 1.0 - float(schedule.gammas[100])  # R1 in noise units: the gradient w.r.t. x / sigma
    assert 0.0 < var < 0.5
    penalty = 0.5 * init.r1_gamma * var * grad.pow(2).flatten(1).sum(1).mean()
    assert float(penalty) > 1e-2
    assert torch.allclose(with_r1 - without, penalty, rtol=1e-3)


def test_gan_parts_count_generator_only() -> None:
    init = _build_initializer("gan")
    parts = init.parts()
    assert parts["generator"] == (init.generator, True)
    assert parts["discriminator"] == (init.discriminator, False)
    assert init.nfe == 1
    _, cond = _batch()
    x = init.sample(cond, 100, CosineSchedule(), generator=torch.Generator().manual_seed(0))
    assert x.shape == (2, 1, SIZE, SIZE) and (x[cond.mask == 0] == 0).all()


def test_patch_critic_shapes_and_errors() -> None:
    _, cond = _batch()
    d = PatchCritic(width=4, depth=2, use_mri=False)
    assert d(torch.zeros(2, 1, SIZE, SIZE), cond).shape == (2, 1, SIZE // 4, SIZE // 4)
    with pytest.raises(RecipeError, match="depth"):
        PatchCritic(depth=0)
    with pytest.raises(RecipeError, match="tau_f"):
        FlowInitializer(torch.nn.Identity(), tau_f=-1)
    with pytest.raises(RecipeError, match="r1_gamma"):
        GANInitializer(torch.nn.Identity(), torch.nn.Identity(), r1_gamma=-1)
    for bad in ({"lr": 0.0}, {"critic_lr": -1e-3}, {"critic_steps": 0}):
        with pytest.raises(RecipeError, match=next(iter(bad))):
            GANInitializer(torch.nn.Identity(), torch.nn.Identity(), **bad)


def test_gan_learning_rates_reach_its_training_stage() -> None:
    """The discriminator can run faster than the generator (TTUR), from the recipe."""
    from mrsisr.recipes import load_recipe

    stage = load_recipe("tdpm", size="tiny").build().training_stages()[-1]
    assert (stage.name, stage.lr, stage.critic_lr, stage.critic_steps) == (
        "generator",
        1e-4,
        None,
        1,
    )
    told = {"initializer.lr": 2e-5, "initializer.critic_lr": 2.5e-3, "initializer.critic_steps": 2}
    stage = load_recipe("tdpm", size="tiny", overrides=told).build().training_stages()[-1]
    assert (stage.lr, stage.critic_lr, stage.critic_steps) == (2e-5, 2.5e-3, 2)


@pytest.mark.parametrize("sampler_name", SAMPLERS.names())
@pytest.mark.parametrize("init_name", INITIALIZERS.names())
def test_every_initializer_composes_with_every_sampler(init_name: str, sampler_name: str) -> None:
    from mrsisr.pipelines import DiffusionPipeline

    torch.manual_seed(0)
    schedule = CosineSchedule()
    denoiser = _AnalyticDenoiser(schedule)  # exact and fast; the UNet runs in the hybrid test
    pipe = DiffusionPipeline(
        schedule=schedule,
        initializer=_build_initializer(init_name),
        denoiser=denoiser,
        sampler=_build_sampler(sampler_name),
        t_start=100,
    )
    _, cond = _batch()
    x = pipe.sample(cond, generator=torch.Generator().manual_seed(0))
    assert x.shape == (2, 1, SIZE, SIZE)
    assert torch.isfinite(x).all()
    assert (x[cond.mask == 0] == 0).all()
    # the analytic denoiser knows x0 = lr exactly, so every chain must end there
    assert (x - cond.lr * cond.mask).abs().max() < 1e-3
    assert pipe.nfe == pipe.initializer.nfe + pipe.sampler.nfe(100)
    print(f"{init_name} + {sampler_name} at t_start=100: NFE {pipe.nfe}")
    if (init_name, sampler_name) == ("flow", "ancestral"):
        assert pipe.nfe == 101  # FTDDM: one flow pass + 100 ancestral steps


def test_hybrid_gan_initializer_with_dpm_solver_pp() -> None:
    # The docs' hybrid: a GAN start at T_trunc = 100, then DPM-Solver++ (20 steps).
    from mrsisr.pipelines import DiffusionPipeline

    torch.manual_seed(0)
    pipe = DiffusionPipeline(
        schedule=CosineSchedule(),
        initializer=GANInitializer(
            generator=BACKBONES.build("unet", use_scale=False, **TINY_UNET),
            discriminator=BACKBONES.build("patch_critic", width=8),
        ),
        denoiser=BACKBONES.build("unet", **TINY_UNET),
        sampler=SAMPLERS.build("dpm_solver_pp", steps=20),
        t_start=100,
    )
    _, cond = _batch()
    assert pipe.sample(cond).shape == (2, 1, SIZE, SIZE)
    assert pipe.nfe == 1 + pipe.sampler.nfe(100)
    assert set(pipe.parts()) == {"denoiser", "generator", "discriminator"}


@pytest.mark.parametrize(
    ("name", "total", "parts"),
    [
        ("ftddm", 50_544_205, {"denoiser": 32_989_761, "flow": 17_554_444}),
        (
            "tdpm",
            60_603_522,
            {"denoiser": 30_301_761, "generator": 30_301_761, "discriminator": 663_233},
        ),
    ],
)
def test_paper_size_recipes_count_like_table_1(name: str, total: int, parts: dict) -> None:
    from mrsisr.pipelines import count_parameters
    from mrsisr.recipes import load_recipe

    pipe = load_recipe(name, size="paper").build()
    counts = count_parameters(pipe)
    assert counts == {"total": total, **parts}
    assert pipe.nfe == 101 and pipe.t_start == 100
    if name == "tdpm":  # both UNets are the DDPM network (no s-embedding), D listed, not counted
        assert pipe.parts()["discriminator"][1] is False
        assert not pipe.denoiser.use_scale and not pipe.initializer.generator.use_scale


@pytest.mark.parametrize("name", ["ftddm", "tdpm"])
def test_tiny_recipes_sample_and_switch_to_dpm_solver(name: str) -> None:
    from mrsisr.recipes import load_recipe

    override = {"sampler": {"type": "dpm_solver_pp", "steps": 10}}
    pipe = load_recipe(name, size="tiny", overrides=override).build().eval()
    assert pipe.nfe == 11
    mask = torch.ones(1, 1, 64, 64)
    mask[..., :8, :] = 0
    cond = Condition(
        mask=mask,
        lr=torch.rand(1, 1, 64, 64) * mask,
        t1=torch.rand(1, 1, 64, 64),
        flair=torch.rand(1, 1, 64, 64),
        scale=torch.tensor([4.0]),
    )
    x = pipe.sample(cond, generator=torch.Generator().manual_seed(0))
    assert x.shape == (1, 1, 64, 64) and torch.isfinite(x).all()
    assert (x[..., :8, :] == 0).all() and x.min() >= 0 and x.max() <= 1


def _tiny_dataset(size: int = 16):
    import numpy as np

    from mrsisr.data import MRSIDataset, Subject

    rng = np.random.default_rng(0)
    subjects = []
    for i in range(2):
        m = np.zeros((2, size, size), np.float32)
        m[:, 3:13, 3:13] = rng.uniform(0.5, 2.0, (2, 10, 10)).astype(np.float32)
        t1 = rng.uniform(0.2, 1.0, (2, size, size)).astype(np.float32)
        maps = {"NAA": m}
        subjects.append(
            Subject(f"s{i}", maps, {"NAA": m > 0}, t1, t1[:, :, ::-1].copy(), shape=(2, size, size))
        )
    return MRSIDataset(subjects, metabolites=("NAA",), lr_sizes=(4, 8), seed=0)


@pytest.mark.parametrize(
    ("init_name", "stages"), [("flow", ["denoiser", "flow"]), ("gan", ["denoiser", "generator"])]
)
def test_trainer_runs_the_initializer_stages(tmp_path, init_name: str, stages: list) -> None:
    from mrsisr.pipelines import DiffusionPipeline
    from mrsisr.recipes import Recipe
    from mrsisr.train.engine import TrainConfig, Trainer

    torch.manual_seed(0)
    pipe = DiffusionPipeline(
        schedule=CosineSchedule(),
        initializer=_build_initializer(init_name).train(),
        denoiser=BACKBONES.build("unet", **TINY_UNET),
        sampler=SAMPLERS.build("ancestral"),
        t_start=100,
    )
    recipe = Recipe(name="tiny_init", size="tiny", source=None, meta={"title": "t"}, tables={})
    cfg = TrainConfig(
        steps=3, batch_size=2, seed=0, checkpoint_every=3, validate_every=3, val_batches=1
    )
    results = Trainer(
        pipe, recipe, _tiny_dataset(), _tiny_dataset(), tmp_path / "run", cfg, progress=False
    ).run()
    assert [r.name for r in results] == stages
    assert all(math.isfinite(r.final_loss) for r in results)
    if init_name == "flow":  # ActNorm took its data-dependent init from the first batch
        assert all(
            bool(m.initialized)
            for m in pipe.initializer.flow.modules()
            if hasattr(m, "initialized")
        )


@pytest.mark.parametrize("size", ["paper", "small", "tiny"])
def test_one_truncated_unet_serves_ftddm_and_tdpm(size: str) -> None:
    # tdpm's own denoiser is the DDPM UNet (Table 1); with use_scale on it is ftddm's network,
    # so a truncated UNet trained for one loads into the other.
    from mrsisr.recipes import load_recipe

    ftddm = load_recipe("ftddm", size=size).tables["denoiser"]
    tdpm = load_recipe("tdpm", size=size, overrides={"denoiser.use_scale": True}).tables["denoiser"]
    assert ftddm == tdpm
    if size == "tiny":
        a = load_recipe("ftddm", size=size).build().denoiser
        b = load_recipe("tdpm", size=size, overrides={"denoiser.use_scale": True}).build().denoiser
        b.load_state_dict(a.state_dict())  # strict: same keys and shapes
