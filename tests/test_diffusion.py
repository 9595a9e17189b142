"""The diffusion loss (Eq. 5), predict_x0, the Eq. 12 step and the gaussian initializer."""

from __future__ import annotations

import math

import pytest
import torch

from mrsisr.backbones.unet import UNet
from mrsisr.diffusion import diffusion_loss, draw_timesteps, posterior_step, predict_x0
from mrsisr.registries import INITIALIZERS
from mrsisr.schedules import CosineSchedule
from mrsisr.types import Condition, Initializer

S = CosineSchedule(T=1000)


def half_mask_cond(b: int = 8, size: int = 16) -> Condition:
    mask = torch.zeros(b, 1, size, size)
    mask[:, :, :, : size // 2] = 1
    return Condition(mask, mask, mask, mask, torch.full((b,), 4.0))


def test_loss_draws_t_in_1_to_t_train_and_feeds_masked_x_t():
    cond = half_mask_cond()
    x0 = torch.rand(8, 1, 16, 16) * cond.mask
    seen = []

    def spy(x_t, t, c):
        seen.extend(t.tolist())
        assert torch.count_nonzero(x_t * (1 - c.mask)) == 0  # noise is masked
        return torch.zeros_like(x_t)

    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        diffusion_loss(spy, x0, cond, S, t_train=5, generator=gen)
    assert set(seen) == {1, 2, 3, 4, 5}


def test_low_t_mixture_puts_the_asked_share_on_small_t():
    gen = torch.Generator().manual_seed(3)
    t = draw_timesteps(40_000, 1000, 1000, gen, low_t_fraction=0.75, low_t_max=50)
    assert int(t.min()) >= 1 and int(t.max()) <= 1000
    share = float((t <= 50).double().mean())  # 0.75 + 0.25 * 50 / 1000 = 0.7625
    assert abs(share - 0.7625) < 4 * math.sqrt(0.7625 * 0.2375 / 40_000)
    # above low_t_max the draw is uniform: each t in 51..1000 has (1 - f) / 1000 probability
    high = t[t > 50]
    assert abs(float(high.double().mean()) - 525.5) < 4 * 274.2 / math.sqrt(high.numel())
    # the default leaves the random stream as Eq. 5's uniform draw had it
    a = draw_timesteps(64, 1000, 1000, torch.Generator().manual_seed(4))
    b = torch.randint(1, 1001, (64,), generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    # without a generator the draw happens where the maps are, as Eq. 5's always did
    assert draw_timesteps(4, 1000, 1000, device="meta").device.type == "meta"
    for bad in ({"low_t_fraction": 1.5}, {"low_t_fraction": 0.5, "low_t_max": 2000}):
        with pytest.raises(ValueError, match="low_t"):
            draw_timesteps(4, 1000, 1000, **bad)


def test_pipeline_trains_with_the_low_t_mixture():
    from mrsisr.recipes import load_recipe
    from mrsisr.types import Batch

    pipe = load_recipe(
        "ddpm", size="tiny", overrides={"pipeline.low_t_fraction": 1.0, "pipeline.low_t_max": 3}
    ).build()
    seen = []
    real = pipe.denoiser.forward
    pipe.denoiser.forward = lambda x, t, c: (seen.extend(t.tolist()), real(x, t, c))[1]
    size = pipe.denoiser.image_size
    cond = half_mask_cond(4, size)
    for _ in range(5):
        pipe.denoiser_loss(Batch(torch.rand(4, 1, size, size) * cond.mask, cond, torch.ones(4)))
    assert set(seen) <= {1, 2, 3} and len(seen) == 20
    with pytest.raises(ValueError, match="low_t_fraction"):
        load_recipe("ddpm", size="tiny", overrides={"pipeline.low_t_fraction": -0.1}).build()


def test_loss_is_averaged_over_all_pixels():
    # eps_theta = 0: the loss is mean(noise^2 * mask) over ALL pixels = mask fraction (0.5 here)
    cond = half_mask_cond(b=16, size=32)
    x0 = torch.rand(16, 1, 32, 32) * cond.mask
    gen = torch.Generator().manual_seed(1)
    loss = diffusion_loss(lambda x, t, c: torch.zeros_like(x), x0, cond, S, 1000, generator=gen)
    n_in = 16 * 32 * 16  # in-mask pixels: chi^2 mean 0.5, sd sqrt(2 / n_in) / 2
    assert abs(float(loss) - 0.5) < 4 * math.sqrt(2 / n_in) / 2


def test_loss_is_zero_for_the_oracle_and_positive_otherwise():
    cond = half_mask_cond()
    x0 = torch.rand(8, 1, 16, 16) * cond.mask

    def oracle(x_t, t, c):  # recovers the noise exactly from the known x0
        g = S.gammas[t].float().view(-1, 1, 1, 1)
        return (x_t - g.sqrt() * x0) / (1 - g).sqrt()

    gen = torch.Generator().manual_seed(2)
    assert float(diffusion_loss(oracle, x0, cond, S, 1000, generator=gen)) < 1e-8
    assert float(diffusion_loss(lambda x, t, c: x, x0, cond, S, 1000, generator=gen)) > 1e-2


def test_loss_trains_a_tiny_unet():
    torch.manual_seed(0)
    net = UNet(
        model_channels=8,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attention_resolutions=(),
        image_size=16,
    )
    cond = half_mask_cond(4)
    x0 = torch.rand(4, 1, 16, 16) * cond.mask
    loss = diffusion_loss(net, x0, cond, S, 100, generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())
    with pytest.raises(ValueError, match="t_train"):
        diffusion_loss(net, x0, cond, S, 0)


def test_predict_x0_inverts_q_sample_up_to_t_T():
    x0 = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    eps = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    t = torch.tensor([1, 500, 1000])
    x_t = S.q_sample(x0, t, eps)
    torch.testing.assert_close(predict_x0(eps, x_t, t, S), x0, rtol=0, atol=1e-7)
    assert torch.isfinite(predict_x0(eps.float(), x_t.float(), 1000, S)).all()


@pytest.mark.parametrize("t", [1, 2, 50, 999, 1000])
def test_posterior_step_is_eq_12_when_unclipped(t):
    x_t, eps, z = torch.randn(3, 1, 4, 4, dtype=torch.float64).unbind(0)
    beta, g, gp = float(S.betas[t]), float(S.gammas[t]), float(S.gammas[t - 1])
    sigma = math.sqrt((1 - gp) / (1 - g) * beta)
    noise = z if t > 1 else None
    expected = (x_t - beta / math.sqrt(1 - g) * eps) / math.sqrt(1 - beta)  # Eq. 12
    if t > 1:
        expected = expected + math.sqrt(0.9) * sigma * z
    got = posterior_step(x_t, predict_x0(eps, x_t, t, S), g, gp, noise, tau=0.9)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


def test_gaussian_initializer():
    init = INITIALIZERS.build("gaussian")
    assert isinstance(init, Initializer) and init.nfe == 0
    assert sum(p.numel() for p in init.parameters()) == 0
    cond = half_mask_cond(4, 64)
    x = init.sample(cond, 1000, S, generator=torch.Generator().manual_seed(0))
    assert x.shape == (4, 1, 64, 64)
    assert torch.count_nonzero(x * (1 - cond.mask)) == 0
    inside = x[cond.mask.bool()]
    n = inside.numel()
    assert abs(float(inside.mean())) < 4 / math.sqrt(n)
    assert abs(float(inside.std()) - 1) < 4 / math.sqrt(2 * n)
    y = init.sample(cond, 1000, S, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, y)


@pytest.mark.parametrize(
    ("name", "nfe"), [("ddpm", 1000), ("ddpm_respace", 100), ("dpm_solver_pp", 100)]
)
def test_zoo_recipes_paper_counts_and_tiny_sampling(name, nfe):
    from mrsisr.pipelines import count_parameters
    from mrsisr.recipes import load_recipe

    paper = load_recipe(name, size="paper").build()
    assert count_parameters(paper)["total"] == 30_301_761  # Table 1: 30.3M
    assert paper.nfe == nfe and paper.t_start == 1000
    # tiny, with a short chain so that the test stays fast
    tiny = load_recipe(name, size="tiny", overrides={"pipeline": {"t_start": 12}}).build()
    cond = half_mask_cond(2, 64)
    x = tiny.sample(cond, generator=torch.Generator().manual_seed(0))
    assert x.shape == (2, 1, 64, 64) and torch.isfinite(x).all()
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    assert torch.count_nonzero(x * (1 - cond.mask)) == 0
    assert tiny.nfe == min(nfe, 12)
