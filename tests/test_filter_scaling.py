"""Filter Scaling: per-filter-pair weight scales from an MLP of the resolution value."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mrsisr.conditioning.filter_scaling import FilterScaledConv2d, FilterScaling, resolution_value
from mrsisr.registries import CONDITIONING


def test_registered_as_conditioning():
    assert CONDITIONING.get("filter_scaling") is FilterScaledConv2d


def test_resolution_value_is_half_lr_size():
    s = torch.tensor([2.0, 4.0, 8.0, 64 / 20])
    assert torch.allclose(resolution_value(s), torch.tensor([16.0, 8.0, 4.0, 10.0]))


def test_different_values_give_different_effective_weights():
    torch.manual_seed(0)
    conv = FilterScaledConv2d(3, 5, 3, latent_dim=8)
    w = conv.effective_weight(torch.tensor([4.0, 16.0]))
    assert w.shape == (2, 5, 3, 3, 3)
    assert not torch.allclose(w[0], w[1])
    # One scale per (out, in) pair, shared over the kernel taps.
    ratio = w[0] / conv.weight
    assert torch.allclose(ratio, ratio[..., :1, :1].expand_as(ratio), rtol=1e-4, atol=1e-5)


def test_identical_values_give_identical_outputs():
    torch.manual_seed(0)
    conv = FilterScaledConv2d(2, 4, 3, latent_dim=8, num_metabolites=7)
    x = torch.randn(1, 2, 8, 8).repeat(3, 1, 1, 1)
    out = conv(x, torch.full((3,), 8.0), torch.tensor([2, 2, 2]))
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])


def test_mixed_batch_matches_per_sample_convolution():
    torch.manual_seed(0)
    conv = FilterScaledConv2d(2, 4, 3, latent_dim=8, num_metabolites=7, bias=True)
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(3, 2, 8, 8)
    r = torch.tensor([4.0, 9.0, 16.0])
    met = torch.tensor([0, 3, 6])
    out = conv(x, r, met)  # grouped path
    for i in range(3):
        w = conv.effective_weight(r[i : i + 1], met[i : i + 1])[0]
        ref = F.conv2d(x[i : i + 1], w, conv.bias, padding=1)
        assert torch.allclose(out[i : i + 1], ref, atol=1e-5)
        single = conv(x[i : i + 1], r[i : i + 1], met[i : i + 1])  # shared-value path
        assert torch.allclose(out[i : i + 1], single, atol=1e-5)


def test_metabolite_changes_the_scales():
    torch.manual_seed(0)
    fs = FilterScaling(2, 3, latent_dim=8, num_metabolites=7)
    r = torch.tensor([8.0, 8.0])
    a = fs(r, torch.tensor([0, 5]))
    assert not torch.allclose(a[0], a[1])


def test_gradients_reach_the_mlp():
    torch.manual_seed(0)
    conv = FilterScaledConv2d(2, 4, 3, latent_dim=8, num_metabolites=7)
    out = conv(torch.randn(2, 2, 8, 8), torch.tensor([4.0, 12.0]), torch.tensor([1, 4]))
    out.square().mean().backward()
    for name, p in conv.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_parameter_count_of_the_met_variant():
    # mapping 1->L (4 layers), metabolite Embedding(7, 3) -> 4 layers, Linear(2L, 2L),
    # Linear(2L, Cout*Cin): the authors' _Met head.
    L, n = 32, 16 * 2
    fs = FilterScaling(2, 16, latent_dim=L, num_metabolites=7)
    mlp_r = (1 * L + L) + 3 * (L * L + L)
    mlp_m = 7 * 3 + (3 * L + L) + 3 * (L * L + L)
    head = (2 * L * 2 * L + 2 * L) + (2 * L * n + n)
    assert sum(p.numel() for p in fs.parameters()) == mlp_r + mlp_m + head
