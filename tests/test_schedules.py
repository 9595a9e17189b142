"""The cosine schedule: indexing, float64, agreement with diffusers, q_sample."""

from __future__ import annotations

import math

import pytest
import torch

from mrsisr.errors import RecipeError
from mrsisr.registries import SCHEDULES
from mrsisr.schedules import CosineSchedule
from mrsisr.types import Schedule


def test_registered_and_protocol():
    s = SCHEDULES.build("cosine", T=1000)
    assert isinstance(s, CosineSchedule)
    assert isinstance(s, Schedule)
    assert "cosine" in SCHEDULES.names()


def test_paper_indexing_and_dtype():
    s = CosineSchedule(T=1000, max_beta=0.999)
    assert s.T == 1000
    assert s.betas.dtype == torch.float64 and s.gammas.dtype == torch.float64
    assert len(s.betas) == len(s.gammas) == 1001
    assert float(s.betas[0]) == 0.0 and float(s.gammas[0]) == 1.0
    assert bool((s.betas[1:] > 0).all()) and float(s.betas.max()) <= 0.999
    assert bool((s.gammas[1:] < s.gammas[:-1]).all())
    # gamma_t = prod_{s <= t} (1 - beta_s)
    assert torch.allclose(s.gammas[1:], torch.cumprod(1 - s.betas[1:], 0), rtol=0, atol=0)


def test_matches_the_closed_form_where_unclipped():
    s = CosineSchedule(T=1000)

    def f(u: float) -> float:
        return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

    for t in (1, 10, 100, 500, 900, 990):
        assert float(s.gammas[t]) == pytest.approx(f(t / 1000) / f(0.0), rel=1e-12)
    # the last beta is clipped at max_beta
    assert float(s.betas[1000]) == pytest.approx(0.999, abs=1e-15)


def test_agrees_with_diffusers_squaredcos_cap_v2():
    from diffusers import DDPMScheduler

    ref = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    s = CosineSchedule(T=1000)
    # diffusers indexes from 0 (code t = paper t - 1) and stores float32
    torch.testing.assert_close(s.betas[1:].float(), ref.betas, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(s.gammas[1:].float(), ref.alphas_cumprod, rtol=2e-5, atol=1e-9)


def test_q_sample_moments_and_t0():
    s = CosineSchedule(T=1000)
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((4, 1, 64, 64), 0.7)
    noise = torch.randn(x0.shape, generator=g)
    t = torch.tensor([0, 1, 300, 1000])
    x_t = s.q_sample(x0, t, noise)
    assert x_t.dtype == x0.dtype and x_t.shape == x0.shape
    assert torch.equal(x_t[0], x0[0])  # t = 0 is the clean map
    for i, ti in enumerate(t.tolist()[1:], start=1):
        gam = float(s.gammas[ti])
        expected = math.sqrt(gam) * 0.7 + math.sqrt(1 - gam) * noise[i]
        torch.testing.assert_close(x_t[i], expected, rtol=1e-6, atol=1e-6)
    assert torch.isfinite(x_t).all()


def test_log_snr_is_decreasing_and_finite():
    s = CosineSchedule(T=1000)
    lam = s.log_snr(torch.arange(1, 1001))
    assert torch.isfinite(lam).all()
    assert bool((lam[1:] < lam[:-1]).all())


@pytest.mark.parametrize("kwargs", [{"T": 0}, {"T": 10.5}, {"max_beta": 1.0}, {"max_beta": 0.0}])
def test_bad_arguments_raise_recipe_error(kwargs):
    with pytest.raises(RecipeError, match=r"\[schedule\]"):
        CosineSchedule(**kwargs)
