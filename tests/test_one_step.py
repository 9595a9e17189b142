"""The one-step pipelines: munet_fs_cwgan (one_step) and flow_enhancer, built from their recipes."""

from __future__ import annotations

import pytest
import torch

from mrsisr.data import kspace_lowres
from mrsisr.pipelines import count_parameters
from mrsisr.pipelines.flow_enhancer import FlowEnhancerPipeline
from mrsisr.pipelines.one_step import OneStepPipeline
from mrsisr.recipes import load_recipe
from mrsisr.registries import PIPELINES
from mrsisr.types import Batch, Condition


def _batch(b: int = 2, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    x0 = torch.nn.functional.interpolate(
        torch.rand(b, 1, 8, 8, generator=g), size=(64, 64), mode="bicubic"
    ).clamp(0, 1)
    mask = torch.ones_like(x0)
    mask[:, :, :4] = 0
    x0 = x0 * mask
    scales = torch.tensor([4.0, 2.0, 8.0, 64 / 20][:b])
    lr = torch.stack(
        [kspace_lowres(x, int(round(64 / float(s)))) for x, s in zip(x0, scales, strict=True)]
    )
    t1, flair = torch.rand(2, b, 1, 64, 64, generator=g)
    cond = Condition(mask, lr, t1, flair, scales)
    return Batch(x0, cond, torch.ones(b), metabolite=["NAA", "Gln", "tCho", "Ins"][:b])


def test_registered():
    assert PIPELINES.get("one_step") is OneStepPipeline
    assert PIPELINES.get("flow_enhancer") is FlowEnhancerPipeline


@pytest.mark.parametrize(
    ("name", "parts", "target"),
    [
        ("munet_fs_cwgan", {"network": True, "critic": False}, 27.5e6),
        ("flow_enhancer", {"flow": True, "pre_network": False}, 37.6e6),
    ],
)
def test_paper_size_counts(name, parts, target):
    pipe = load_recipe(name, size="paper").build()
    assert {k: v[1] for k, v in pipe.parts().items()} == parts
    counts = count_parameters(pipe)
    assert abs(counts["total"] - target) / target < 0.01
    counted = [k for k, c in parts.items() if c]
    assert counts["total"] == sum(counts[k] for k in counted)
    assert pipe.nfe == 1


def _train_steps(pipe, loss_fn, modules, steps=4, lr=2e-3):
    params = [p for m in modules for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=lr)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def test_munet_fs_cwgan_tiny_trains_and_samples():
    torch.manual_seed(0)
    pipe = load_recipe("munet_fs_cwgan", size="tiny").build()
    batch = _batch()
    stages = pipe.training_stages()
    assert len(stages) == 1 and stages[0].adversarial and stages[0].critic_steps == 5
    # One critic step and one generator step with lambda_adv > 0: finite, gradients flow.
    g = torch.Generator().manual_seed(0)
    loss_d = pipe.critic_loss(batch, g, lambda_adv=0.01)
    loss_d.backward()
    assert torch.isfinite(loss_d)
    assert all(p.grad is not None for p in pipe.critic.parameters())
    assert all(p.grad is None for p in pipe.network.parameters())
    pipe.critic.zero_grad()
    loss_g = pipe.generator_loss(batch, g, lambda_adv=0.01)
    loss_g.backward()
    assert torch.isfinite(loss_g)
    # The reconstruction loss goes down on a fixed batch.
    losses = _train_steps(pipe, lambda: pipe.generator_loss(batch, lambda_adv=0.0), [pipe.network])
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
    out = pipe.sample(batch.cond, metabolite=batch.metabolite)
    assert out.shape == (2, 1, 64, 64)
    assert out.min() >= 0 and out.max() <= 1 and torch.all(out[:, :, :4] == 0)
    assert torch.equal(pipe(batch.cond), pipe.sample(batch.cond))


def test_lambda_adv_draws():
    pipe = load_recipe("munet_fs_cwgan", size="tiny").build()
    g = torch.Generator().manual_seed(0)
    draws = torch.tensor([pipe.draw_lambda_adv(g) for _ in range(400)])
    low, high = pipe.lambda_adv_range
    assert high > 0
    zero = (draws == 0).float().mean()
    assert 0.05 < zero < 0.16  # zero_prob = 0.1
    assert draws.max() <= high and draws[draws > 0].min() >= low


def test_one_step_without_critic_trains_without_adversary():
    pipe = load_recipe(
        "munet_fs_cwgan", size="tiny", overrides={"pipeline": {"lambda_adv_range": [0.0, 0.0]}}
    ).build()
    stage = pipe.training_stages()[0]
    assert not stage.adversarial
    assert pipe.draw_lambda_adv() == 0.0


def test_flow_enhancer_tiny_trains_and_samples():
    torch.manual_seed(0)
    pipe = load_recipe("flow_enhancer", size="tiny").build()
    batch = _batch()
    names = [s.name for s in pipe.training_stages()]
    assert names == ["pre_network", "flow"]
    assert "pre_network" in pipe.training_stages()[1].frozen
    loss_pre = pipe.pre_network_loss(batch)
    assert torch.isfinite(loss_pre)

    def flow_loss():
        return pipe.loss(batch, torch.Generator().manual_seed(0))

    loss = flow_loss()
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is None for p in pipe.pre_network.parameters())  # frozen
    pipe.flow.zero_grad()
    losses = _train_steps(pipe, flow_loss, [pipe.flow], lr=1e-3)
    assert losses[-1] < losses[0]
    pipe.eval()
    a = pipe.sample(batch.cond, torch.Generator().manual_seed(1))
    b = pipe.sample(batch.cond, torch.Generator().manual_seed(1))
    assert a.shape == (2, 1, 64, 64) and torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1 and torch.all(a[:, :, :4] == 0)
    # Temperature 0 is deterministic; other temperatures draw different maps.
    z0 = pipe.sample(batch.cond, torch.Generator().manual_seed(2), tau=0.0)
    assert torch.equal(z0, pipe.sample(batch.cond, torch.Generator().manual_seed(3), tau=0.0))
    c = pipe.sample(batch.cond, torch.Generator().manual_seed(2))
    assert not torch.equal(a, c)


def test_inference_uses_the_metabolite_carried_by_the_condition():
    from dataclasses import replace

    from mrsisr.data import METABOLITES
    from mrsisr.recipes import load_recipe

    torch.manual_seed(0)
    pipe = load_recipe("munet_fs_cwgan", size="tiny").build().eval()
    b = 2
    cond = Condition(
        mask=torch.ones(b, 1, 64, 64),
        lr=torch.rand(b, 1, 64, 64),
        t1=torch.rand(b, 1, 64, 64),
        flair=torch.rand(b, 1, 64, 64),
        scale=torch.full((b,), 4.0),
        metabolite=torch.full((b,), METABOLITES.index("NAA")),
    )
    implicit = pipe.sample(cond)
    explicit = pipe.sample(replace(cond, metabolite=None), metabolite=["NAA"] * b)
    torch.testing.assert_close(implicit, explicit)
    other = pipe.sample(replace(cond, metabolite=torch.full((b,), METABOLITES.index("Gly"))))
    assert not torch.allclose(implicit, other)


def test_one_lambda_adv_per_training_step():
    torch.manual_seed(0)
    pipe = load_recipe(
        "munet_fs_cwgan", size="tiny", overrides={"pipeline.lambda_adv_range": [0.0, 1.0]}
    ).build()
    seen = []
    real_predict = pipe._predict
    pipe._predict = lambda batch, lam: (seen.append(lam), real_predict(batch, lam))[1]
    b = 2
    cond = Condition(
        mask=torch.ones(b, 1, 64, 64),
        lr=torch.rand(b, 1, 64, 64),
        t1=torch.rand(b, 1, 64, 64),
        flair=torch.rand(b, 1, 64, 64),
        scale=torch.full((b,), 4.0),
    )
    batch = Batch(x0=torch.rand(b, 1, 64, 64), cond=cond, max_value=torch.ones(b))
    for seed in range(4):
        gen = torch.Generator().manual_seed(seed)
        seen.clear()
        for _ in range(3):  # the critic steps and the network step share one draw
            pipe.critic_loss(batch, gen)
        pipe.generator_loss(batch, gen)
        assert len(set(seen)) == 1, seen
