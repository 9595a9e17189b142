"""Conditioning entries (cin, adagn) and the (t, s) embeddings."""

from __future__ import annotations

import math

import pytest
import torch

from mrsisr.conditioning.embeddings import ScaleEmbedding, TimestepEmbedding, timestep_embedding
from mrsisr.conditioning.modulated import ModulatedNorm
from mrsisr.errors import RecipeError
from mrsisr.registries import BACKBONES, CONDITIONING


def _modulated_names() -> list[str]:
    return [
        n
        for n in CONDITIONING.names()
        if isinstance(CONDITIONING.get(n), type) and issubclass(CONDITIONING.get(n), ModulatedNorm)
    ]


def test_builtin_modulated_norms_are_registered():
    assert {"cin", "adagn"} <= set(_modulated_names())


@pytest.mark.parametrize("name", _modulated_names())
def test_every_modulated_norm_builds_and_runs_tiny(name):
    m = CONDITIONING.build(name, channels=8, emb_dim=16)
    h, e = torch.randn(3, 8, 5, 5), torch.randn(3, 16)
    out = m(h, e)
    assert out.shape == h.shape and torch.isfinite(out).all()
    # 2C affine params of the norm + Linear(E, 2C): the same for every entry (Table 1 counts)
    assert sum(p.numel() for p in m.parameters()) == 2 * 8 + 16 * 16 + 16
    # and it plugs into the UNet
    net = BACKBONES.build(
        "unet",
        model_channels=8,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attention_resolutions=(8,),
        num_heads=2,
        conditioning=name,
        image_size=16,
    )
    assert all(rb.cond_norm.__class__ is CONDITIONING.get(name) for rb in _resblocks(net))


def _resblocks(net):
    from mrsisr.backbones.unet import ResBlock

    return [m for m in net.modules() if isinstance(m, ResBlock)]


def _with_modulation(m: ModulatedNorm, gamma: float, beta: float) -> ModulatedNorm:
    lin = m.emb_layers[1]
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias[: m.channels] = gamma
        lin.bias[m.channels :] = beta
    return m


def test_cin_is_instance_norm_then_scale_shift():
    m = _with_modulation(CONDITIONING.build("cin", channels=4, emb_dim=8), 0.5, -2.0)
    h = torch.randn(2, 4, 6, 6) * torch.tensor([1.0, 3.0, 0.1, 7.0]).view(1, 4, 1, 1) + 5
    out = m(h, torch.randn(2, 8))
    mu = h.mean(dim=(2, 3), keepdim=True)
    sd = (h.var(dim=(2, 3), keepdim=True, unbiased=False) + 1e-5).sqrt()
    expected = (h - mu) / sd * 1.5 - 2.0  # Eq. 6 with sigma_hat = 1.5, mu_hat = -2
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


def test_adagn_is_group_norm_32_then_scale_shift():
    m = _with_modulation(CONDITIONING.build("adagn", channels=64, emb_dim=8), -0.25, 1.0)
    h = torch.randn(2, 64, 4, 4) * torch.linspace(0.1, 5, 64).view(1, 64, 1, 1)
    out = m(h, torch.randn(2, 8))
    g = h.reshape(2, 32, 2 * 16)  # 32 groups of 2 channels
    n = (g - g.mean(-1, keepdim=True)) / (g.var(-1, unbiased=False, keepdim=True) + 1e-5).sqrt()
    torch.testing.assert_close(out, n.reshape(h.shape) * 0.75 + 1.0, rtol=1e-4, atol=1e-4)


def test_cin_and_adagn_differ_on_the_same_input():
    torch.manual_seed(0)
    a = CONDITIONING.build("cin", channels=64, emb_dim=8)
    b = CONDITIONING.build("adagn", channels=64, emb_dim=8)
    b.load_state_dict(a.state_dict())  # identical parameters, different normalisation
    h = torch.randn(1, 64, 4, 4) * torch.linspace(0.1, 5, 64).view(1, 64, 1, 1)
    e = torch.randn(1, 8)
    assert not torch.allclose(a(h, e), b(h, e), atol=1e-3)


def test_modulation_depends_on_the_embedding():
    torch.manual_seed(0)
    m = CONDITIONING.build("adagn", channels=32, emb_dim=8)
    h = torch.randn(1, 32, 4, 4)
    assert not torch.allclose(m(h, torch.zeros(1, 8)), m(h, torch.ones(1, 8)))


def test_unet_refuses_a_conditioning_that_is_not_a_modulated_norm():
    others = [n for n in CONDITIONING.names() if n not in _modulated_names()]
    if not others:
        pytest.skip("no non-norm conditioning entry is registered")
    with pytest.raises(RecipeError, match="conditioning"):
        BACKBONES.build(
            "unet",
            model_channels=8,
            channel_mult=(1,),
            num_res_blocks=1,
            attention_resolutions=(),
            conditioning=others[0],
            image_size=8,
        )


def test_timestep_embedding_formula():
    t = torch.tensor([0, 1, 250])
    e = timestep_embedding(t, 8)
    assert e.shape == (3, 8)
    freqs = [math.exp(-math.log(10000) * k / 4) for k in range(4)]
    for i, ti in enumerate(t.tolist()):
        expected = [math.cos(ti * f) for f in freqs] + [math.sin(ti * f) for f in freqs]
        torch.testing.assert_close(e[i], torch.tensor(expected), rtol=1e-5, atol=1e-5)
    assert timestep_embedding(t, 7).shape == (3, 7)


def test_embedding_mlps_have_the_paper_sizes():
    assert sum(p.numel() for p in TimestepEmbedding(64, 256).parameters()) == 82_432
    assert sum(p.numel() for p in ScaleEmbedding(256).parameters()) == 132_096
    out = ScaleEmbedding(16)(torch.tensor([2.0, 8.0]))
    assert out.shape == (2, 16) and not torch.allclose(out[0], out[1])
