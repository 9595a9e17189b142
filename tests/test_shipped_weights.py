"""Every weights file shipped in zoo/weights loads offline into its recipe and has a complete card."""

from __future__ import annotations

import json

import pytest
import torch

from mrsisr.weights import weights_dir

SHIPPED = sorted(weights_dir().glob("*.safetensors")) if weights_dir().is_dir() else []


def _card(path):
    return json.loads(path.with_suffix(".json").read_text())


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_weights_load_and_have_a_card(path):
    import mrsisr

    card = _card(path)
    for key in ("recipe", "size", "data", "stages", "wall_time_s", "device", "config"):
        assert key in card, key
    assert path.stem == f"{card['recipe']}-{card['size']}"
    assert all(s["steps"] > 0 or s["reused_from"] for s in card["stages"])
    pipe = mrsisr.load(card["recipe"], size=card["size"])
    assert pipe.recipe.name == card["recipe"] and pipe.nfe >= 1


@pytest.mark.slow
@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_weights_sample_in_range(path):
    """A whole chain (101 NFE at small size) through the shipped weights stays in [0, 1]."""
    import mrsisr
    from mrsisr.types import Condition

    card = _card(path)
    pipe = mrsisr.load(card["recipe"], size=card["size"])
    ones = torch.ones(2, 1, 64, 64)
    cond = Condition(
        mask=ones,
        lr=0.5 * ones,
        t1=ones,
        flair=ones,
        scale=torch.full((2,), 4.0),
        metabolite=torch.tensor([2, 1]),
    )
    if getattr(pipe, "t_start", 0) > 100:
        pytest.skip("full 1000-step chain: covered by the bench, not the unit tests")
    x = pipe.sample(cond, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(x).all() and x.min() >= 0 and x.max() <= 1


ABLATION = sorted((weights_dir() / "ablation").glob("*.safetensors"))


@pytest.mark.parametrize("path", ABLATION, ids=lambda p: p.stem)
def test_shipped_ablation_weights_match_their_variant(path):
    """Each shipped ablation file was trained with its variant's overrides, holds the variant's
    own parts and loads into it."""
    from mrsisr.eval.studies import ABLATIONS, StudyConfig, ablation_weights_path
    from mrsisr.eval.studies.ablation import ablation_pipeline, flat_keys

    card = json.loads(path.with_suffix(".json").read_text())
    variant = path.stem.removeprefix(f"{card['recipe']}-").removesuffix(f"-{card['size']}")
    ab = ABLATIONS[variant]
    assert ablation_weights_path(variant, card["size"]) == path and card["recipe"] == ab.recipe
    assert card["exported_parts"] == list(ab.own_parts or ["flow"])
    trained = flat_keys(card["resolved_recipe"])
    for key, value in flat_keys(ab.overrides).items():
        assert trained[key] == value, key
    pipe = ablation_pipeline(StudyConfig(size=card["size"]), variant)
    assert pipe.nfe == {"flow_only": 1, "diffusion_only": 1000}.get(variant, 101)


TRUNCATION = sorted((weights_dir() / "truncation").glob("*.safetensors"))


@pytest.mark.parametrize("path", TRUNCATION, ids=lambda p: p.stem)
def test_shipped_truncation_initializers_draw_their_step(path):
    """Each shipped T_trunc initializer was trained for the step its name says and loads there."""
    from mrsisr.eval.studies import StudyConfig
    from mrsisr.eval.studies.truncation import t_trunc_pipeline, t_trunc_weights_path

    card = _card(path)
    recipe, step = card["recipe"], int(card["resolved_recipe"]["pipeline"]["t_start"])
    assert t_trunc_weights_path(recipe, step, card["size"]) == path
    assert "denoiser" not in card["exported_parts"]  # the recipe's own UNet is reused
    pipe = t_trunc_pipeline(StudyConfig(size=card["size"], progress=False), recipe, step)
    assert pipe.t_start == step and pipe.nfe == 1 + step
