"""Samplers against exact answers (Gaussian data), diffusers, and the registry at tiny size."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mrsisr.backbones.unet import UNet
from mrsisr.registries import SAMPLERS
from mrsisr.samplers.dpm_solver_pp import DPMSolverPP, dpm_solver_pp_steps
from mrsisr.samplers.respace import space_timesteps
from mrsisr.schedules import CosineSchedule
from mrsisr.types import Condition, Sampler

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

M, V = 0.5, 0.15  # Gaussian data x0 ~ N(M, V^2) per pixel
S = CosineSchedule(T=1000)
G = S.gammas.tolist()


def optimal_eps(x, t, cond):
    """E[eps | x_t] for x0 ~ N(M, V^2): the exact epsilon-predictor."""
    g = S.gammas[t].to(x).view(-1, 1, 1, 1)
    return (1 - g).sqrt() * (x - g.sqrt() * M) / (g * V * V + 1 - g)


def ones_cond(n: int, size: int) -> Condition:
    one = torch.ones(n, 1, size, size)
    return Condition(one, one, one, one, torch.full((n,), 2.0))


def start(t_start: int, shape, gen) -> torch.Tensor:
    """x_T ~ N(0, I) for t_start = T, else x_t ~ q(x_t | x0) with Gaussian x0."""
    if t_start == S.T:
        return torch.randn(shape, generator=gen)
    x0 = M + V * torch.randn(shape, generator=gen)
    return S.q_sample(x0, torch.full((shape[0],), t_start), torch.randn(shape, generator=gen))


def eq12_law(timesteps: list[int], tau: float = 1.0) -> tuple[float, float]:
    """Exact mean and std of the Eq. 12 chain (with the optimal eps) along `timesteps`.

    Written with Eq. 12 itself, `x_{t-1} = (x_t - beta/sqrt(1-gamma_t) eps)/sqrt(1-beta) + sigma z`
    (beta = 1 - gamma_t/gamma_prev: the respaced beta), independently of the samplers' code.
    """
    t0 = timesteps[0]
    if t0 == S.T:
        mu, var = 0.0, 1.0
    else:
        mu, var = math.sqrt(G[t0]) * M, G[t0] * V * V + 1 - G[t0]
    for t, tp in zip(timesteps, timesteps[1:] + [0], strict=True):
        g, gp = G[t], G[tp]
        beta = 1 - g / gp
        k = math.sqrt(1 - g) / (g * V * V + 1 - g)  # eps = k (x - sqrt(g) M)
        a = (1 - beta / math.sqrt(1 - g) * k) / math.sqrt(1 - beta)
        b = beta / math.sqrt(1 - g) * k * math.sqrt(g) * M / math.sqrt(1 - beta)
        s2 = (1 - gp) / (1 - g) * beta if tp > 0 else 0.0
        mu, var = a * mu + b, a * a * var + tau * s2
    return mu, math.sqrt(var)


def assert_moments(x: torch.Tensor, mean: float, std: float, z: float = 4.0) -> None:
    """Sample mean and std agree with (mean, std) within z standard errors."""
    n = x.numel()
    se_mean, se_std = std / math.sqrt(n), std / math.sqrt(2 * n)
    assert abs(float(x.mean()) - mean) < z * se_mean, (float(x.mean()), mean, se_mean)
    assert abs(float(x.std()) - std) < z * se_std, (float(x.std()), std, se_std)


# ---------------------------------------------------------------- exact answers, Gaussian data
@pytest.mark.parametrize("t_start", [1000, 100])
def test_ancestral_exact_on_gaussian_data(t_start):
    gen = torch.Generator().manual_seed(t_start)
    shape = (4, 1, 128, 128)  # 65,536 pixels: 4 SE of the std is 1.1%
    sampler = SAMPLERS.build("ancestral", tau_d=1.0, clip_denoised=False, clamp_output=False)
    x = sampler(
        optimal_eps, start(t_start, shape, gen), t_start, ones_cond(4, 128), S, generator=gen
    )
    mean, std = eq12_law(list(range(t_start, 0, -1)))
    assert_moments(x, mean, std)
    # the exact law of the 1000-step (or 100-step) chain is the data law up to 1.5% in std
    assert abs(mean - M) < 1e-6 and abs(std / V - 1) < 0.015


@pytest.mark.parametrize(("t_start", "steps"), [(1000, 100), (100, 20)])
def test_respace_exact_on_gaussian_data(t_start, steps):
    gen = torch.Generator().manual_seed(steps)
    shape = (4, 1, 128, 128)  # 65,536 pixels: 4 SE of the std is 1.1%
    sampler = SAMPLERS.build(
        "respace", steps=steps, tau_d=1.0, clip_denoised=False, clamp_output=False
    )
    x = sampler(
        optimal_eps, start(t_start, shape, gen), t_start, ones_cond(4, 128), S, generator=gen
    )
    mean, std = eq12_law(space_timesteps(t_start, steps))
    assert_moments(x, mean, std)
    assert abs(mean - M) < 1e-6


def test_temperature_scales_the_step_noise():
    gen = torch.Generator().manual_seed(3)
    shape = (4, 1, 128, 128)  # 65,536 pixels: 4 SE of the std is 1.1%
    sampler = SAMPLERS.build("ancestral", tau_d=0.5, clip_denoised=False, clamp_output=False)
    x = sampler(optimal_eps, start(100, shape, gen), 100, ones_cond(4, 128), S, generator=gen)
    mean, std = eq12_law(list(range(100, 0, -1)), tau=0.5)
    assert std < 0.97 * eq12_law(list(range(100, 0, -1)))[1]
    assert_moments(x, mean, std)


def pf_ode_map(x_start: torch.Tensor, t: int) -> torch.Tensor:
    """Exact probability-flow ODE map x_t -> x_0 for Gaussian data (standardised values kept)."""
    g = G[t]
    return M + V * (x_start - math.sqrt(g) * M) / math.sqrt(g * V * V + 1 - g)


@pytest.mark.parametrize(("t_start", "atol"), [(1000, 5e-3), (100, 1e-3)])
def test_dpm_solver_pp_exact_on_gaussian_data(t_start, atol):
    gen = torch.Generator().manual_seed(t_start + 1)
    shape = (1, 1, 128, 128)
    cond = ones_cond(1, 128).to(dtype=torch.float64)
    sampler = SAMPLERS.build("dpm_solver_pp", steps=100, clip_denoised=False, clamp_output=False)
    xs = start(t_start, shape, gen).double()
    x = sampler(optimal_eps, xs, t_start, cond, S)
    t0 = sampler.timesteps(t_start, S)[0]
    assert t0 == (996 if t_start == 1000 else 100)  # the lambda >= -5.1 clip only acts near T
    # per sample, the solver follows the exact ODE map (measured max error: 3.5e-3 from T,
    # the first step from lambda = -5.08 being the roughest; 3.2e-4 from t = 100)
    exact = pf_ode_map(xs, t0)
    err = float((x - exact).abs().max())
    assert err < atol
    if t_start == 1000:  # and converges as the steps increase (second order)
        finer = SAMPLERS.build("dpm_solver_pp", steps=400, clip_denoised=False, clamp_output=False)
        assert float((finer(optimal_eps, xs, t_start, cond, S) - exact).abs().max()) < err / 4
    # so it has the data law (from t = 100) / the law of the clipped start (from T)
    g = G[t0]
    scale = math.sqrt(g * V * V + 1 - g)
    mean, std = (M, V) if t_start == 100 else (M - V * math.sqrt(g) * M / scale, V / scale)
    assert_moments(x, mean, std)


# ---------------------------------------------------------------- agreement with diffusers
def test_dpm_solver_pp_matches_diffusers_step_for_step():
    from diffusers import DPMSolverMultistepScheduler

    for t_start, steps in [(100, 10), (1000, 25)]:
        ts = DPMSolverPP(steps=steps, spacing="time_uniform").timesteps(t_start, S)
        ref = DPMSolverMultistepScheduler(
            num_train_timesteps=1000,
            trained_betas=S.betas[1:].numpy(),
            algorithm_type="dpmsolver++",
            solver_order=2,
            solver_type="midpoint",
            lower_order_final=True,
            final_sigmas_type="zero",
        )
        ref.set_timesteps(timesteps=[t - 1 for t in ts[:-1]])  # diffusers' t = paper t - 1
        gen = torch.Generator().manual_seed(0)
        x0 = torch.randn(2, 1, 8, 8, generator=gen, dtype=torch.float64)
        cond = ones_cond(2, 8).to(dtype=torch.float64)
        x_ref = x0.clone()
        ours = list(dpm_solver_pp_steps(optimal_eps, x0.clone(), ts, cond, S))
        assert len(ours) == len(ref.timesteps) == steps
        for k, t_code in enumerate(ref.timesteps.tolist()):
            eps = optimal_eps(x_ref, torch.tensor([t_code + 1]), None)
            x_ref = ref.step(eps, t_code, x_ref).prev_sample
            # diffusers keeps its schedule in float32: agreement to ~1e-4
            torch.testing.assert_close(ours[k], x_ref, rtol=1e-4, atol=2e-4)


def test_respace_matches_diffusers_ddpm_step_for_step():
    from diffusers import DDPMScheduler

    ts = space_timesteps(1000, 50)
    ref = DDPMScheduler(
        num_train_timesteps=1000,
        trained_betas=S.betas[1:].numpy(),
        variance_type="fixed_small",
        clip_sample=False,
    )
    ref.set_timesteps(timesteps=[t - 1 for t in ts])
    cond = ones_cond(2, 8)
    x_start = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    # both draw the step noise from the same generator, one draw per noisy step
    x_ref, gen = x_start.clone(), torch.Generator().manual_seed(9)
    for t_code in ref.timesteps.tolist():
        eps = optimal_eps(x_ref, torch.tensor([t_code + 1]), None)
        x_ref = ref.step(eps, t_code, x_ref, generator=gen).prev_sample
    ours = SAMPLERS.build("respace", steps=50, tau_d=1.0, clip_denoised=False, clamp_output=False)
    x = ours(optimal_eps, x_start, 1000, cond, S, generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(x, x_ref, rtol=1e-4, atol=1e-4)


def test_respace_timesteps_are_improved_diffusion_spacing():
    # improved-diffusion space_timesteps(1000, "100") keeps round(i * 999 / 99) (0-based)
    kept = space_timesteps(1000, 100)
    expected = sorted({round(i * 999 / 99) + 1 for i in range(100)}, reverse=True)
    assert kept == expected and kept[0] == 1000 and kept[-1] == 1 and len(kept) == 100
    # same as diffusers' "linspace" spacing
    assert kept == [int(c) + 1 for c in np.linspace(0, 999, 100).round()[::-1]]
    assert space_timesteps(100, 200) == list(range(100, 0, -1))


# ---------------------------------------------------------------- numerics
def _tiny_unet() -> UNet:
    torch.manual_seed(0)
    net = UNet(
        model_channels=8,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attention_resolutions=(4,),
        num_heads=2,
        image_size=8,
        use_scale=True,
    ).eval()
    for p in net.parameters():  # random output convs: a non-trivial eps
        if p.abs().sum() == 0:
            torch.nn.init.normal_(p, std=0.1)
    return net


@pytest.mark.slow
def test_full_1000_step_cosine_chain_is_finite():
    """The whole chain, t = 1000 (gamma = 2.4e-9, beta = 0.999) down to 1, stays finite."""
    gen = torch.Generator().manual_seed(0)
    cond = ones_cond(2, 8)
    net = _tiny_unet()
    seen = []

    def watch(x, t, c):
        assert torch.isfinite(x).all(), f"non-finite x_t at t = {int(t[0])}"
        seen.append(int(t[0]))
        return net(x, t, c)

    # the authors' setting: x0_hat clipped; also without the clip, with the exact predictor
    x = SAMPLERS.build("ancestral")(
        watch, torch.randn(2, 1, 8, 8, generator=gen), 1000, cond, S, generator=gen
    )
    assert torch.isfinite(x).all() and seen == list(range(1000, 0, -1))
    raw = SAMPLERS.build("ancestral", clip_denoised=False, clamp_output=False)
    y = raw(optimal_eps, torch.randn(2, 1, 8, 8, generator=gen), 1000, cond, S, generator=gen)
    assert torch.isfinite(y).all() and float(y.abs().max()) < 2.0
    z = SAMPLERS.build("dpm_solver_pp", steps=50, lambda_min=None, clip_denoised=False)(
        watch, torch.randn(2, 1, 8, 8, generator=gen), 1000, cond, S
    )
    assert torch.isfinite(z).all()


# ---------------------------------------------------------------- every registered sampler
@pytest.mark.parametrize("name", SAMPLERS.names())
@pytest.mark.parametrize("t_start", [100, 20])
def test_every_sampler_at_tiny_size(name, t_start):
    sampler = SAMPLERS.build(name)
    assert isinstance(sampler, Sampler)
    net = _tiny_unet()
    calls = []

    def counted(x, t, c):
        calls.append(int(t[0]))
        return net(x, t, c)

    gen = torch.Generator().manual_seed(0)
    cond = ones_cond(2, 8)
    cond.mask[:, :, :3] = 0
    x_start = torch.randn(2, 1, 8, 8, generator=gen) * cond.mask
    keep = x_start.clone()
    out = sampler(counted, x_start, t_start, cond, S, generator=torch.Generator().manual_seed(1))
    assert torch.equal(x_start, keep)  # pure
    assert out.shape == (2, 1, 8, 8) and torch.isfinite(out).all()
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert torch.count_nonzero(out[:, :, :3]) == 0  # masked
    assert len(calls) == sampler.nfe(t_start)
    assert all(1 <= t <= t_start for t in calls) and calls == sorted(calls, reverse=True)
    if t_start == 20:
        again = sampler(net, x_start, t_start, cond, S, generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(out, again)  # reproducible with the same generator


def test_nfe_values():
    assert SAMPLERS.build("ancestral").nfe(1000) == 1000
    assert SAMPLERS.build("ancestral").nfe(100) == 100
    assert SAMPLERS.build("respace", steps=100).nfe(1000) == 100
    assert SAMPLERS.build("respace", steps=100).nfe(50) == 50
    assert SAMPLERS.build("dpm_solver_pp", steps=20).nfe(1000) == 20
    assert SAMPLERS.build("dpm_solver_pp", steps=20).nfe(10) == 10


@pytest.mark.parametrize("name", ["ancestral", "respace", "dpm_solver_pp"])
def test_progress_callback(name):
    seen = []
    sampler = SAMPLERS.build(name, progress=lambda i, n: seen.append((i, n)))
    sampler(optimal_eps, torch.randn(1, 1, 4, 4), 30, ones_cond(1, 4), S)
    n = sampler.nfe(30)
    assert seen == [(i, n) for i in range(1, n + 1)]


def test_bad_sampler_arguments():
    from mrsisr.errors import RecipeError

    with pytest.raises(RecipeError, match=r"\[sampler\]"):
        SAMPLERS.build("respace", steps=0)
    with pytest.raises(RecipeError, match=r"\[sampler\]"):
        SAMPLERS.build("ancestral", variance="medium")
    with pytest.raises(ValueError, match="t_start"):
        SAMPLERS.build("ancestral")(optimal_eps, torch.zeros(1, 1, 4, 4), 0, ones_cond(1, 4), S)


def test_dpm_solver_pp_few_steps_from_truncation_keeps_the_data_law():
    # Gaussian data, exact eps-predictor, exact start from q(x_100 | x0): 10 solver steps suffice
    from mrsisr.registries import SAMPLERS as REG
    from mrsisr.registries import SCHEDULES
    from mrsisr.types import Condition

    torch.manual_seed(0)
    sched = SCHEDULES.build("cosine", T=1000)
    g = sched.gammas.double()
    m, v, n = 0.5, 0.15, 4000

    def den(x, t, cond):
        gt = g[t].view(-1, 1, 1, 1).to(x.dtype)
        return (1 - gt).sqrt() * (x - gt.sqrt() * m) / (gt * v * v + 1 - gt)

    ones = torch.ones(n, 1, 4, 4)
    cond = Condition(mask=ones, lr=ones, t1=ones, flair=ones, scale=torch.full((n,), 4.0))
    x0 = m + v * torch.randn(n, 1, 4, 4)
    xs = (g[100].sqrt() * x0 + (1 - g[100]).sqrt() * torch.randn_like(x0)).float()
    out = REG.build("dpm_solver_pp", steps=10, clip_denoised=False, clamp_output=False)(
        den, xs, 100, cond, sched
    )
    assert abs(out.mean().item() - m) < 0.005 and abs(out.std().item() - v) / v < 0.02


@pytest.mark.parametrize("t_start", [1000, 100])
def test_dpm_solver_pp_ten_logsnr_steps_keep_the_std(t_start):
    # exact eps-predictor on Gaussian data: the default (logSNR-uniform, lower-order final) grid
    # keeps the law within 3% at 10 steps; the time-uniform grid from T loses about a third
    gen = torch.Generator().manual_seed(7)
    shape = (1, 1, 128, 128)
    cond = ones_cond(1, 128).to(dtype=torch.float64)
    xs = start(t_start, shape, gen).double()
    kw = {"steps": 10, "clip_denoised": False, "clamp_output": False}
    fast = SAMPLERS.build("dpm_solver_pp", **kw)
    assert fast.resolved_spacing == "logsnr" and fast.nfe(t_start) == 10
    t0 = fast.timesteps(t_start, S)[0]
    g = G[t0]
    ideal = V if t_start == 100 else V / math.sqrt(g * V * V + 1 - g)
    x = fast(optimal_eps, xs, t_start, cond, S)
    assert abs(float(x.std()) / ideal - 1) < 0.03
    uniform = SAMPLERS.build("dpm_solver_pp", spacing="time_uniform", **kw)
    x_u = uniform(optimal_eps, xs, t_start, cond, S)
    if t_start == 1000:
        assert float(x_u.std()) / ideal < 0.75


def test_dpm_solver_pp_grids():
    assert DPMSolverPP(steps=19).resolved_spacing == "logsnr"
    assert DPMSolverPP(steps=20).resolved_spacing == "time_uniform"
    ts = DPMSolverPP(steps=10).timesteps(1000, S)
    assert len(ts) == 11 and ts[0] == 996 and ts[-2:] == [1, 0]
    lam = [0.5 * math.log(G[t] / (1 - G[t])) for t in ts[:-1]]
    gaps = np.diff(lam)
    assert gaps.min() > 0 and gaps.max() / gaps.min() < 2.5  # near-uniform in log-SNR
    # denoise_to_zero: one more call, at t = 1, on either grid
    for spacing in ("logsnr", "time_uniform"):
        s = DPMSolverPP(steps=10, spacing=spacing, denoise_to_zero=True)
        ts = s.timesteps(100, S)
        assert ts[-2:] == [1, 0] and s.nfe(100) == 11 and len(set(ts)) == len(ts)
    # short starts give fewer, still distinct steps
    ts = DPMSolverPP(steps=10).timesteps(5, S)
    assert ts == sorted(set(ts), reverse=True) and ts[0] == 5 and ts[-1] == 0
    assert DPMSolverPP(steps=10).nfe(5) == len(ts) - 1 <= 5
    from mrsisr.errors import RecipeError

    with pytest.raises(RecipeError, match="spacing"):
        DPMSolverPP(spacing="karras")
