"""Learning-rate schedules and loss weightings: exact values, validation, recipe defaults."""

from __future__ import annotations

import math

import pytest
import torch

from mrsisr.diffusion import loss_weights
from mrsisr.errors import MrsisrError, RecipeError
from mrsisr.lr_schedules import lr_factor
from mrsisr.recipes import load_recipe
from mrsisr.schedules import CosineSchedule
from mrsisr.train.engine import TrainConfig


def test_linear_decays_to_one_step_above_zero():
    f = [lr_factor(k, 10, "linear") for k in range(10)]
    assert f[0] == 1.0 and f[-1] == pytest.approx(0.1)
    assert all(a > b for a, b in zip(f, f[1:]))


def test_warmup_then_cosine():
    f = [lr_factor(k, 12, "cosine", warmup=2) for k in range(12)]
    assert f[:2] == [0.5, 1.0]
    assert f[2] == pytest.approx(1.0) and f[-1] == pytest.approx(0.1)
    assert f[7] == pytest.approx(0.5 * (1 - math.cos(math.pi * 5 / 10)))


def test_constant_is_one_after_warmup():
    assert [lr_factor(k, 5, "constant", warmup=1) for k in range(5)] == [1.0] * 5


def test_config_refuses_unknown_schedule_and_long_warmup():
    with pytest.raises(MrsisrError, match="`lr_schedule`"):
        TrainConfig(lr_schedule="step")
    with pytest.raises(MrsisrError, match="`warmup_steps`"):
        TrainConfig(steps=10, warmup_steps=10)


def test_x0_weighting_turns_eps_error_into_x0_error():
    s = CosineSchedule()
    t = torch.tensor([1, 50, 100])
    g = s.gammas[t]
    torch.testing.assert_close(loss_weights(t, s, "x0").double(), ((1 - g) / g), rtol=1e-6, atol=0)
    # min-SNR-5 equals 5 x the x0 weighting wherever SNR > 5 (all of t <= 100), eps-MSE at low SNR
    torch.testing.assert_close(loss_weights(t, s, "min_snr"), 5 * loss_weights(t, s, "x0"))
    assert float(loss_weights(torch.tensor([1000]), s, "min_snr")) == pytest.approx(1.0)
    assert torch.equal(loss_weights(t, s, "eps"), torch.ones(3))
    with pytest.raises(ValueError, match="loss_weighting"):
        loss_weights(t, s, "v")


def test_recipe_train_table_is_validated():
    r = load_recipe("ftddm", size="tiny", overrides={"train.lr_schedule": "linear"})
    assert r.train == {"lr_schedule": "linear"}
    r.build()  # [train] builds nothing
    with pytest.raises(RecipeError, match=r"\[train\] unknown key 'lr_shedule'"):
        load_recipe("ftddm", size="tiny", overrides={"train.lr_shedule": "linear"})
    with pytest.raises(RecipeError, match="must be one of"):
        load_recipe("ftddm", size="tiny", overrides={"train.lr_schedule": "step"})
    with pytest.raises(RecipeError, match="loss_weighting"):
        load_recipe("ftddm", size="tiny", overrides={"pipeline.loss_weighting": "v"}).build()
