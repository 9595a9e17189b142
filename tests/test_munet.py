"""MUNet-FS (2-D), its k-space data consistency, the sharpness CIN and the WGAN-GP critic."""

from __future__ import annotations

import pytest
import torch

from mrsisr.backbones.critic import WGANCritic
from mrsisr.backbones.munet import (
    MUNet,
    SharpnessNorm,
    data_consistency,
    metabolite_codes,
)
from mrsisr.data import kspace_lowres
from mrsisr.errors import DataError, RecipeError
from mrsisr.kspace import block_mask as kspace_block_mask
from mrsisr.kspace import fft2c, ifft2c
from mrsisr.losses import critic_loss, generator_loss, gradient_penalty
from mrsisr.registries import BACKBONES
from mrsisr.types import Condition

SCALES = torch.tensor([2.0, 4.0, 64 / 12, 8.0])  # L = 32, 16, 12, 8


def _smooth_maps(b: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 1, 8, 8, generator=g)
    return torch.nn.functional.interpolate(x, size=(64, 64), mode="bicubic").clamp(0, 1)


def _cond(hr: torch.Tensor, scales: torch.Tensor, mask: torch.Tensor | None = None) -> Condition:
    lr = torch.stack(
        [kspace_lowres(h, int(round(64 / float(s)))) for h, s in zip(hr, scales, strict=True)]
    )
    g = torch.Generator().manual_seed(1)
    t1, flair = torch.rand(2, *hr.shape, generator=g)
    return Condition(torch.ones_like(hr) if mask is None else mask, lr, t1, flair, scales)


def test_block_convention_matches_the_data_degradation():
    hr = _smooth_maps(4)
    half = torch.round(32 / SCALES).long()
    block = kspace_block_mask(half, 64)
    ours = ifft2c(fft2c(hr) * block).abs()
    for i, s in enumerate(SCALES):
        ref = kspace_lowres(hr[i], int(round(64 / float(s))))
        assert torch.allclose(ours[i], ref, atol=1e-5)


def test_real_data_consistency_is_exact_on_the_central_block():
    hr = _smooth_maps(4)
    cond = _cond(hr, SCALES)
    x = torch.rand(4, 1, 64, 64, generator=torch.Generator().manual_seed(3))
    half = torch.round(32 / SCALES).long()
    y = data_consistency(x, cond.lr, half, mode="real")
    block = kspace_block_mask(half, 64).expand_as(y)
    diff = (fft2c(y) - fft2c(cond.lr)).abs()[block]
    assert diff.max() < 1e-5 * fft2c(cond.lr).abs().max()
    # ... and it did change the output: outside the block x's k-space is kept.
    outside = kspace_block_mask(half, 64, symmetric=True).logical_not().expand_as(y)
    assert torch.allclose(fft2c(y)[outside], fft2c(x)[outside], atol=1e-4)


@pytest.mark.parametrize("mode", ["magnitude", "real"])
def test_data_consistency_leaves_a_consistent_map_unchanged(mode):
    lr = _cond(_smooth_maps(4), SCALES).lr
    half = torch.round(32 / SCALES).long()
    assert torch.allclose(data_consistency(lr, lr, half, mode=mode), lr, atol=1e-5)


def test_munet_output_is_data_consistent():
    torch.manual_seed(0)
    net = MUNet(features=2, latent_dim=4, data_consistency="real")
    cond = _cond(_smooth_maps(4), SCALES)
    out = net(cond, lambda_adv=0.0, metabolite=["NAA", "tCr", "Gly", "Ins"])
    half = torch.round(32 / SCALES).long()
    block = kspace_block_mask(half, 64).expand_as(out)
    diff = (fft2c(out) - fft2c(cond.lr)).abs()[block]
    assert diff.max() < 1e-5 * fft2c(cond.lr).abs().max()


def test_munet_output_shape_mask_and_range():
    torch.manual_seed(0)
    net = BACKBONES.build("munet", features=2, latent_dim=4)
    mask = torch.ones(4, 1, 64, 64)
    mask[:, :, :10] = 0
    cond = _cond(_smooth_maps(4), SCALES, mask)
    out = net(cond, lambda_adv=torch.tensor([0.0, 0.01, 0.0, 0.01]))
    assert out.shape == (4, 1, 64, 64)
    assert torch.all(out[:, :, :10] == 0)
    assert torch.isfinite(out).all() and out.min() >= 0


def test_sharpness_knob_and_resolution_change_the_output():
    torch.manual_seed(0)
    net = MUNet(features=2, latent_dim=4, data_consistency="none")
    cond = _cond(_smooth_maps(2), torch.tensor([4.0, 4.0]))
    a = net(cond, lambda_adv=0.0)
    assert not torch.allclose(a, net(cond, lambda_adv=1.0))
    cond2 = Condition(cond.mask, cond.lr, cond.t1, cond.flair, torch.tensor([2.0, 2.0]))
    assert not torch.allclose(a, net(cond2, lambda_adv=0.0))


def test_sharpness_norm_starts_at_scale_two():
    norm = SharpnessNorm(3, latent_dim=4)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        norm.style.weight.zero_()
    out = norm(x, torch.tensor([0.0, 0.5]))
    assert torch.allclose(out, 2 * torch.nn.functional.instance_norm(x), atol=1e-5)


def test_metabolite_codes():
    from mrsisr.data import METABOLITES

    codes = metabolite_codes(["tCr", "Cr+PCr", "naa", "GPC+PCh"]).tolist()
    assert codes == [METABOLITES.index(m) for m in ("tCr", "tCr", "NAA", "tCho")]
    with pytest.raises(DataError, match="unknown metabolite 'Lac'"):
        metabolite_codes(["Lac"])


def test_bad_settings_raise_one_line_errors():
    with pytest.raises(RecipeError, match="data_consistency"):
        MUNet(features=2, latent_dim=4, data_consistency="hard")


def _paper_count_3d_and_2d(f: int = 16, L: int = 32) -> tuple[int, int]:
    """Parameters of the authors' 3-D FS_Met_adv network and of our 2-D one, by arithmetic."""

    def fs(n):  # mapping(1) + embedding(7, 3) + mapping(3) + Linear(2L, 2L) + Linear(2L, n)
        return (
            (2 * L + 3 * (L * L + L))
            + 21
            + (4 * L + 3 * (L * L + L))
            + (4 * L * L + 2 * L)
            + (2 * L * n + n)
        )

    def cin(c):  # 4-layer MLP of width 2L on lambda_adv + Linear(2L, 2C)
        return (4 * L + 3 * (4 * L * L + 2 * L)) + (2 * L * 2 * c + 2 * c)

    def block(a, b, k):
        return a * b * k + fs(a * b) + cin(b) + b + b * b * k + fs(b * b) + cin(b) + b

    def total(k_top):
        enc = block(2, f, k_top) + sum(block(w, 2 * w, 9) for w in (f, 2 * f, 4 * f, 8 * f))
        dec = sum(
            cin_ * w * 9 + w + block(3 * w, w, 9)
            for cin_, w in ((32 * f, 8 * f), (8 * f, 4 * f), (4 * f, 2 * f))
        )
        dec += 2 * f * f * k_top + f + block(3 * f, f, k_top) + f + 1
        return 2 * enc + dec

    return total(27), total(9)


def test_paper_size_parameter_count():
    three_d, two_d = _paper_count_3d_and_2d()
    assert three_d == 27_506_989  # the authors' count, paper-code.md §2
    n = sum(p.numel() for p in MUNet().parameters())
    assert n == two_d
    assert abs(n - 27.5e6) / 27.5e6 < 0.01


def test_critic_scores_and_losses():
    torch.manual_seed(0)
    critic = WGANCritic(widths=(4, 8, 8, 8), hidden=4)
    hr = _smooth_maps(3)
    cond = _cond(hr, SCALES[:3])
    fake = torch.rand(3, 1, 64, 64, requires_grad=True)
    assert critic(hr, cond).shape == (3,)
    gp = gradient_penalty(critic, cond, hr, fake.detach())
    assert torch.isfinite(gp) and gp >= 0
    loss_d = critic_loss(critic, cond, hr, fake)
    loss_d.backward()
    assert fake.grad is None  # fakes are detached for the critic step
    assert all(p.grad is not None for p in critic.parameters())
    # Generator loss: reconstruction only at lambda_adv = 0, adversarial term added above it.
    rec = generator_loss(fake, hr)
    assert torch.allclose(generator_loss(fake, hr, critic, cond, 0.0), rec)
    lam = 0.5
    adv = generator_loss(fake, hr, critic, cond, lam)
    assert torch.allclose(adv, rec - lam * critic(fake, cond).mean(), atol=1e-6)
    assert generator_loss(hr, hr) < 1e-5


def test_critic_paper_size_count():
    # 4 strided convs (no bias) + Linear(256*4*4, 16) + Linear(16, 1); the critic is not counted.
    convs = 4 * 32 * 16 + 32 * 64 * 16 + 64 * 128 * 16 + 128 * 256 * 16
    assert sum(p.numel() for p in WGANCritic().parameters()) == convs + 4096 * 16 + 16 + 17


def test_any_critic_plugs_into_the_cwgan_one_argument_order():
    """`critic.type = "patch_critic"` (per-patch logits, called as critic(x, cond)) trains too."""
    from mrsisr.losses import critic_scores
    from mrsisr.recipes import load_recipe
    from mrsisr.types import Batch

    torch.manual_seed(0)
    over = {"critic": {"type": "patch_critic", "width": 4, "depth": 2}}
    pipe = load_recipe("munet_fs_cwgan", size="tiny", overrides=over).build()
    hr = _smooth_maps(2)
    batch = Batch(x0=hr, cond=_cond(hr, SCALES[:2]), max_value=torch.ones(2), metabolite=[])
    assert critic_scores(pipe.critic, hr, batch.cond).shape == (2,)
    d_loss = pipe.critic_loss(batch, torch.Generator().manual_seed(0), lambda_adv=0.5)
    g_loss = pipe.generator_loss(batch, torch.Generator().manual_seed(0), lambda_adv=0.5)
    assert torch.isfinite(d_loss) and torch.isfinite(g_loss)
    g_loss.backward()
    assert any(p.grad is not None for p in pipe.network.parameters())
