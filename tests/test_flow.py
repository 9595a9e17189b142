"""Tests of the conditional multi-scale flow (`conditional_flow`) and its training loss."""

from __future__ import annotations

import math

import pytest
import torch

from mrsisr.backbones.flownet import ConditionalFlow
from mrsisr.errors import RecipeError
from mrsisr.initializers.flow import FlowInitializer
from mrsisr.registries import BACKBONES
from mrsisr.types import Condition

TINY = {"width": 8, "blocks": (1, 1, 1, 1), "levels": 3, "image_size": 16}
SMALL = {"width": 32, "blocks": (4, 4, 4, 4), "levels": 3, "image_size": 64}


def _cosine_gammas(T: int = 1000, s: float = 0.008) -> torch.Tensor:
    t = torch.arange(T + 1, dtype=torch.float64)
    f = torch.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
    return f / f[0]


class _Schedule:
    """Stand-in cosine schedule in paper indexing (float64 gammas, q_sample)."""

    def __init__(self, T: int = 1000) -> None:
        self.T = T
        self.gammas = _cosine_gammas(T)
        ratio = self.gammas[1:] / self.gammas[:-1]
        self.betas = torch.cat([torch.zeros(1, dtype=torch.float64), 1 - ratio])

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        g = self.gammas[t].to(x0.dtype).view(-1, 1, 1, 1)
        return g.sqrt() * x0 + (1 - g).sqrt() * noise


def _phantom(batch: int, size: int, seed: int = 0) -> tuple[torch.Tensor, Condition]:
    """Smooth blob maps inside a round mask, with LR/T1/FLAIR-like conditions."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    mask = ((yy**2 + xx**2) < 0.8).float().expand(batch, 1, size, size).clone()
    cy, cx = (torch.rand(2, batch, 1, 1, 1, generator=g) - 0.5) * 0.6
    amp = 0.5 + 0.5 * torch.rand(batch, 1, 1, 1, generator=g)
    x0 = amp * torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.3) * mask
    x0 = x0 / x0.amax(dim=(1, 2, 3), keepdim=True)
    lr = torch.nn.functional.avg_pool2d(x0, 4).repeat_interleave(4, -1).repeat_interleave(4, -2)
    t1 = torch.rand(batch, 1, size, size, generator=g)
    cond = Condition(mask=mask, lr=lr, t1=t1, flair=1 - t1, scale=torch.full((batch,), 4.0))
    return x0, cond


def _perturb(module: torch.nn.Module, std: float, seed: int = 0) -> None:
    """Move every parameter off its (identity-like) initialisation."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(std * torch.randn(p.shape, generator=g, dtype=p.dtype))


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("size", [TINY, SMALL], ids=["tiny", "small"])
def test_inverse_of_forward_is_identity(size: dict) -> None:
    torch.manual_seed(0)
    n = size["image_size"]
    flow = ConditionalFlow(**size)
    x0, cond = _phantom(2, n)
    x = x0 + 0.1 * torch.randn_like(x0)
    flow.train()
    flow.log_prob(x, cond.channels())  # data-dependent ActNorm init
    _perturb(flow, 0.02)
    flow.eval()
    with torch.no_grad():
        z, logdet = flow.encode(x, cond.channels())
        x_back, logdet_inv = flow.decode_with_logdet(z, cond.channels())
    assert z.shape == (2, n * n)
    assert (x_back - x).abs().max() < 1e-4
    assert torch.allclose(logdet + logdet_inv, torch.zeros(2), atol=1e-2 * (1 + logdet.abs().max()))


def test_logdet_matches_brute_force_jacobian() -> None:
    torch.manual_seed(0)
    flow = ConditionalFlow(width=4, blocks=(1, 1, 1), levels=2, image_size=8).double()
    _perturb(flow, 0.1)
    flow.eval()
    x = torch.randn(1, 1, 8, 8, dtype=torch.float64)
    cond_img = torch.rand(1, 4, 8, 8, dtype=torch.float64)

    def f(v: torch.Tensor) -> torch.Tensor:
        return flow.encode(v.view(1, 1, 8, 8), cond_img)[0].view(-1)

    jac = torch.autograd.functional.jacobian(f, x.view(-1))
    assert jac.shape == (64, 64)
    _, brute = torch.linalg.slogdet(jac)
    with torch.no_grad():
        _, logdet = flow.encode(x, cond_img)
    assert abs(float(brute) - float(logdet)) < 1e-8 * (1 + abs(float(brute)))
    assert abs(float(logdet)) > 1e-3  # the flow is not volume-preserving here


def test_log_prob_is_a_density_change_of_variables() -> None:
    torch.manual_seed(0)
    flow = ConditionalFlow(**TINY).double().eval()
    _perturb(flow, 0.05)
    x = torch.randn(3, 1, 16, 16, dtype=torch.float64)
    cond_img = torch.rand(3, 4, 16, 16, dtype=torch.float64)
    z, logdet = flow.encode(x, cond_img)
    prior = torch.distributions.Normal(flow.prior_mu, flow.prior_sigma)
    expected = prior.log_prob(z).sum(1) + logdet
    assert torch.allclose(flow.log_prob(x, cond_img), expected)
    bpd = flow.nll_bits_per_dim(x, cond_img)
    assert torch.allclose(bpd, (-expected / 256 + math.log(256)) / math.log(2))


def test_nll_decreases_on_a_small_batch() -> None:
    torch.manual_seed(0)
    flow = ConditionalFlow(**TINY)
    x0, cond = _phantom(4, 16)
    schedule = _Schedule()
    x_t = schedule.q_sample(x0, torch.full((4,), 100), torch.randn_like(x0) * cond.mask)
    opt = torch.optim.Adam(flow.parameters(), lr=1e-3)
    losses = []
    for _ in range(15):
        loss = flow.nll_bits_per_dim(x_t, cond.channels()).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[1] - 0.1  # losses[0] is before ActNorm's data-dependent init


def test_samples_at_zero_temperature_are_deterministic() -> None:
    torch.manual_seed(0)
    flow = ConditionalFlow(**TINY).eval()
    _perturb(flow, 0.05)
    _, cond = _phantom(2, 16)
    c = cond.channels()
    a = flow.sample(c, tau=0.0, generator=torch.Generator().manual_seed(1))
    b = flow.sample(c, tau=0.0, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert torch.equal(a, flow.decode(flow.prior_mu.expand(2, -1), c))
    hot1 = flow.sample(c, tau=0.9, generator=torch.Generator().manual_seed(1))
    hot1b = flow.sample(c, tau=0.9, generator=torch.Generator().manual_seed(1))
    hot2 = flow.sample(c, tau=0.9, generator=torch.Generator().manual_seed(2))
    assert torch.equal(hot1, hot1b)
    assert not torch.allclose(hot1, hot2)


def _train_flow_initializer(steps: int) -> list[float]:
    torch.manual_seed(0)
    init = FlowInitializer(ConditionalFlow(**TINY))
    x0, cond = _phantom(2, 16)
    schedule = _Schedule()
    opt = torch.optim.Adam(init.parameters(), lr=1e-3, betas=(0.5, 0.9))
    losses = []
    for _ in range(steps):
        loss = init.loss(x0, cond, 100, schedule)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    for p in init.parameters():
        assert torch.isfinite(p).all()
    with torch.no_grad():
        x = init.sample(cond, 100, schedule, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(x).all()
    return losses


def test_flow_initializer_training_is_finite_and_decreases() -> None:
    losses = _train_flow_initializer(25)
    assert all(math.isfinite(v) for v in losses)
    assert min(losses[-5:]) < losses[1]


@pytest.mark.slow
def test_no_nan_over_200_training_steps() -> None:
    losses = _train_flow_initializer(200)
    assert all(math.isfinite(v) for v in losses)
    assert min(losses[-20:]) < losses[1]


@pytest.mark.parametrize(
    ("width", "expected"), [(64, 5_024_524), (128, 17_554_444), (192, 37_604_620)]
)
def test_paper_parameter_counts(width: int, expected: int) -> None:
    # paper-code.md §2: FTDDM flow (width 128) and the Flow Enhancer's flow (width 192), both
    # with 4 condition channels and blocks [12] * 4.
    flow = BACKBONES.build("conditional_flow", width=width, cond_channels=4)
    assert _params(flow) == expected


def test_bad_shapes_are_recipe_errors() -> None:
    with pytest.raises(RecipeError, match="blocks"):
        ConditionalFlow(blocks=(1, 1), levels=3)
    with pytest.raises(RecipeError, match="image_size"):
        ConditionalFlow(image_size=36, levels=3)
