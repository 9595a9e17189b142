"""The ADM-style denoising UNet: paper parameter counts, conditioning on (t, s), shapes."""

from __future__ import annotations

import pytest
import torch

from mrsisr.backbones.unet import UNet
from mrsisr.errors import RecipeError
from mrsisr.registries import BACKBONES
from mrsisr.types import Condition

TINY = dict(
    model_channels=8,
    channel_mult=(1, 2),
    num_res_blocks=1,
    attention_resolutions=(8,),
    num_heads=2,
    image_size=16,
)

# Every BACKBONES entry defined in mrsisr.backbones.unet, with tiny keyword arguments.
TINY_DENOISERS = {"unet": TINY}


def _count(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _cond(b: int = 2, size: int = 16, scale=(2.0, 4.0)) -> Condition:
    g = torch.Generator().manual_seed(1)
    mask = (torch.rand(b, 1, size, size, generator=g) > 0.2).float()
    img = lambda: torch.rand(b, 1, size, size, generator=g)  # noqa: E731
    return Condition(mask=mask, lr=img(), t1=img(), flair=img(), scale=torch.tensor(scale[:b]))


def _unzero(net: torch.nn.Module) -> torch.nn.Module:
    """Give the zero-initialised convolutions random weights (as after training)."""
    torch.manual_seed(0)
    for p in net.parameters():
        if p.abs().sum() == 0:
            torch.nn.init.normal_(p, std=0.05)
    return net


@pytest.mark.parametrize(
    ("use_scale", "conditioning", "expected"),
    [
        (False, "adagn", 30_301_761),
        (True, "adagn", 32_989_761),
        (True, "cin", 32_989_761),
        (False, "cin", 30_301_761),
    ],
)
def test_paper_size_counts_match_table_1(use_scale, conditioning, expected):
    net = BACKBONES.build("unet", use_scale=use_scale, conditioning=conditioning)
    assert _count(net) == expected


def test_paper_size_breakdown_with_s_embedding():
    net = UNet()  # defaults are the paper's FTDDM UNet
    parts = {
        "time_embed": 82_432,
        "scale_embed": 132_096,
        "input_blocks": 10_123_584,
        "middle_block": 3_151_360,
        "output_blocks": 19_499_584,
        "out": 705,
    }
    for name, n in parts.items():
        assert _count(getattr(net, name)) == n, name
    assert net.in_channels == 5


@pytest.mark.parametrize("name", sorted(TINY_DENOISERS))
def test_every_unet_backbone_builds_tiny_and_runs(name):
    import mrsisr.backbones.unet as mod

    mine = [n for n in BACKBONES.names() if BACKBONES.get(n).__module__ == mod.__name__]
    assert sorted(mine) == sorted(TINY_DENOISERS)  # a new entry must get a tiny config here
    net = _unzero(BACKBONES.build(name, **TINY_DENOISERS[name]))
    cond = _cond()
    x = torch.randn(2, 1, 16, 16, requires_grad=True)
    eps = net(x, torch.tensor([1, 1000]), cond)
    assert eps.shape == (2, 1, 16, 16) and torch.isfinite(eps).all()
    eps.square().mean().backward()
    assert x.grad is not None and all(p.grad is not None for p in net.parameters())


def test_output_is_zero_at_initialisation():
    net = UNet(**TINY)
    eps = net(torch.randn(2, 1, 16, 16), torch.tensor([5, 6]), _cond())
    assert torch.count_nonzero(eps) == 0  # zero-initialised output conv


def test_output_depends_on_t_and_s_and_condition_channels():
    net = _unzero(UNet(**TINY)).eval()
    x, cond = torch.randn(2, 1, 16, 16), _cond()
    base = net(x, torch.tensor([10, 10]), cond)
    assert not torch.allclose(base, net(x, torch.tensor([900, 900]), cond))
    other_s = Condition(cond.mask, cond.lr, cond.t1, cond.flair, torch.tensor([8.0, 8.0]))
    assert not torch.allclose(base, net(x, torch.tensor([10, 10]), other_s))
    other_lr = Condition(cond.mask, cond.lr * 0, cond.t1, cond.flair, cond.scale)
    assert not torch.allclose(base, net(x, torch.tensor([10, 10]), other_lr))
    # a scalar timestep is broadcast
    torch.testing.assert_close(base, net(x, torch.tensor(10), cond))


def test_without_s_embedding_the_scale_is_ignored():
    net = _unzero(UNet(**TINY, use_scale=False)).eval()
    x, cond = torch.randn(2, 1, 16, 16), _cond()
    other_s = Condition(cond.mask, cond.lr, cond.t1, cond.flair, torch.tensor([8.0, 3.0]))
    t = torch.tensor([10, 20])
    torch.testing.assert_close(net(x, t, cond), net(x, t, other_s))
    assert net.scale_embed is None


@pytest.mark.parametrize(("use_mask", "use_mri", "channels"), [(False, True, 4), (True, False, 3)])
def test_ablation_inputs(use_mask, use_mri, channels):
    net = _unzero(UNet(**TINY, use_mask=use_mask, use_mri=use_mri))
    assert net.in_channels == channels
    assert net(torch.randn(1, 1, 16, 16), torch.tensor([3]), _cond(1)).shape == (1, 1, 16, 16)


def test_runs_on_64x64_with_attention_at_16_and_8():
    net = UNet(model_channels=8, channel_mult=(1, 2, 2, 2), num_res_blocks=1, num_heads=2)
    from mrsisr.backbones.unet import AttentionBlock

    n_attn = sum(isinstance(m, AttentionBlock) for m in net.modules())
    assert n_attn == 2 + 1 + 4  # down (1 per level), middle, up (2 per level)
    assert net(torch.randn(1, 1, 64, 64), torch.tensor([7]), _cond(1, 64)).shape == (1, 1, 64, 64)


def test_as_gan_generator_at_a_fixed_timestep():
    g = _unzero(UNet(**TINY)).eval()
    z, cond = torch.randn(2, 1, 16, 16), _cond()
    x_trunc = g(z, torch.full((2,), 100), cond)  # G(z, y) = unet(z, t_fixed, y)
    assert x_trunc.shape == z.shape


def test_bad_sizes_raise_recipe_error():
    with pytest.raises(RecipeError, match="num_heads"):
        UNet(
            model_channels=6,
            channel_mult=(1,),
            num_res_blocks=1,
            attention_resolutions=(8,),
            num_heads=4,
            image_size=8,
        )
    with pytest.raises(RecipeError, match="image_size"):
        UNet(model_channels=8, channel_mult=(1, 2, 2), image_size=18)


def test_first_level_width_other_than_base():
    from mrsisr.registries import BACKBONES
    from mrsisr.types import Condition

    net = BACKBONES.build(
        "unet",
        model_channels=4,
        channel_mult=(2, 2),
        num_res_blocks=1,
        attention_resolutions=(),
        num_heads=1,
        image_size=16,
    )
    ones = torch.ones(2, 1, 16, 16)
    cond = Condition(mask=ones, lr=ones, t1=ones, flair=ones, scale=torch.full((2,), 4.0))
    assert net(torch.randn(2, 1, 16, 16), torch.tensor([1, 50]), cond).shape == (2, 1, 16, 16)
