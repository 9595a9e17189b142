"""The `diffusers` adapter sampler: against the native samplers and exact laws (Gaussian data)."""

from __future__ import annotations

import pytest
import torch
from test_samplers import S, V, assert_moments, eq12_law, ones_cond, optimal_eps, start

from mrsisr.errors import RecipeError
from mrsisr.registries import SAMPLERS
from mrsisr.samplers.dpm_solver_pp import DPMSolverPP

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation:DeprecationWarning",
    "ignore:.*generator.*:UserWarning",
)


def _gaussian_start(t_start: int, seed: int = 3, size: int = 128) -> tuple[torch.Tensor, object]:
    gen = torch.Generator().manual_seed(seed)
    cond = ones_cond(1, size).to(dtype=torch.float64)
    return start(t_start, (1, 1, size, size), gen).double(), cond


def test_dpm_solver_multistep_equals_the_native_solver_from_truncation():
    # diffusers' DPM-Solver++(2M) through the adapter = the native solver on the same time grid
    xs, cond = _gaussian_start(100)
    adapter = SAMPLERS.build(
        "diffusers",
        scheduler="DPMSolverMultistepScheduler",
        steps=10,
        options={"algorithm_type": "dpmsolver++", "solver_order": 2, "final_sigmas_type": "zero"},
        clamp_output=False,
    )
    native = DPMSolverPP(
        steps=10,
        spacing="time_uniform",
        lower_order_final=False,
        clip_denoised=False,
        clamp_output=False,
    )
    assert adapter.timesteps(100, S) == native.timesteps(100, S)[:-1]
    a = adapter(optimal_eps, xs, 100, cond, S)
    b = native(optimal_eps, xs, 100, cond, S)
    # diffusers keeps its schedule in float32
    torch.testing.assert_close(a, b, rtol=1e-4, atol=2e-4)


def test_ddpm_scheduler_has_the_ancestral_law():
    # every timestep of the truncated chain, fixed-small variance: the exact law of Eq. 12 (tau 1)
    xs, cond = _gaussian_start(100, seed=5)
    adapter = SAMPLERS.build(
        "diffusers",
        scheduler="DDPMScheduler",
        steps=100,
        options={"clip_sample": False},
        clamp_output=False,
    )
    assert adapter.nfe(100) == 100
    x = adapter(optimal_eps, xs, 100, cond, S, generator=torch.Generator().manual_seed(0))
    assert_moments(x, *eq12_law(list(range(100, 0, -1))))


@pytest.mark.parametrize(
    ("scheduler", "steps"),
    [
        ("UniPCMultistepScheduler", 10),
        ("EulerDiscreteScheduler", 50),
        ("HeunDiscreteScheduler", 25),
    ],
)
def test_truncated_start_keeps_the_data_law(scheduler, steps):
    # from an exact draw of q(x_100 | x0): variance-preserving (UniPC) and sigma-parameterised
    # (Euler, Heun) schedulers both end on the data law N(M, V^2)
    xs, cond = _gaussian_start(100, seed=11)
    s = SAMPLERS.build("diffusers", scheduler=scheduler, steps=steps, clamp_output=False)
    x = s(optimal_eps, xs, 100, cond, S)
    assert abs(float(x.mean()) - 0.5) < 0.005
    assert abs(float(x.std()) / V - 1) < 0.03, float(x.std())


def test_unipc_from_t_100_on_a_recipe():
    from mrsisr.recipes import load_recipe

    pipe = load_recipe(
        "ftddm",
        size="tiny",
        overrides={
            "initializer.type": "gaussian",
            "sampler": {"type": "diffusers", "scheduler": "UniPCMultistepScheduler", "steps": 5},
        },
    ).build()
    assert pipe.nfe == 5
    cond = ones_cond(2, 64)
    out = pipe.sample(cond, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 1, 64, 64) and torch.isfinite(out).all()


def test_bad_adapter_settings():
    with pytest.raises(RecipeError, match="diffusers scheduler class"):
        SAMPLERS.build("diffusers", scheduler="NoSuchScheduler")
    with pytest.raises(RecipeError, match="diffusers scheduler class"):
        SAMPLERS.build("diffusers", scheduler="UNet2DModel")
    with pytest.raises(RecipeError, match="no option 'nope'"):
        SAMPLERS.build("diffusers", options={"nope": 1}).nfe(100)
    with pytest.raises(RecipeError, match="steps"):
        SAMPLERS.build("diffusers", steps=0)
