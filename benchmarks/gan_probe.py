"""Probe a TDPM GAN run: what its generator draws, and whether a discriminator can learn.

Two measurements behind the TDPM notes in docs/training.md and docs/bench.md:

- `draws RUN K`: the generator's (EMA) draws of `x_K` on fold-0 validation maps at x8, x4 and
  x2: their residual std around `sqrt(gamma_K) x0` inside the mask (the forward process's own
  is `sqrt(1 - gamma_K)`), and the run's discriminator's patch accuracy on real `x_K` against
  those draws (0.5: at chance).
- `critic RUN K --r1 noise|plain|none`: a fresh discriminator (the recipe's patch critic)
  trained alone, Adam (0.5, 0.99), against the fixed draws of the run's EMA generator on 64
  training maps at x4, with the R1 penalty in noise units (`gamma/2 sigma^2 E|grad|^2`, the
  GAN initializer's), plain (`gamma/2 E|grad|^2`, as before this version) or none; it prints
  the loss and accuracy every 50 steps.

RUN is a `mrsisr train tdpm --size small` run folder on the phantom (its
`stages/generator/latest` checkpoint is read).

Usage (from the repository root; one CPU thread):
    python benchmarks/gan_probe.py draws RUN 50
    python benchmarks/gan_probe.py critic RUN 50 --r1 plain [--lr 1e-4] [--steps 300]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def _setup(run: str, k: int, ema: bool):
    """The TDPM pipeline at `t_start = k` with the run's latest generator and discriminator."""
    from mrsisr.checkpoint import load_checkpoint
    from mrsisr.data import fold_split, load_dataset
    from mrsisr.data.splits import resolve_data
    from mrsisr.recipes import load_recipe

    pipe = load_recipe("tdpm", size="small", overrides={"pipeline": {"t_start": k}}).build()
    ck = load_checkpoint(f"{run}/stages/generator/latest")
    pipe.initializer.generator.load_state_dict(ck.part_state_dict("generator", ema=ema))
    pipe.initializer.discriminator.load_state_dict(ck.part_state_dict("discriminator"))
    subjects = load_dataset(resolve_data("phantom"))
    train_ids, val_ids, _ = fold_split([s.subject for s in subjects], 0)
    return pipe, ck.step, subjects, train_ids, val_ids


def _maps(subjects, ids, lr_size: int, n: int):
    from mrsisr.data import MRSIDataset, collate

    data = MRSIDataset(subjects, lr_size=lr_size, subject_ids=ids)
    idx = np.random.default_rng(0).permutation(len(data))[:n]
    return collate([data[int(i)] for i in idx])


@torch.no_grad()
def draws(run: str, k: int) -> None:
    """Print the residual std of the EMA generator's draws and the run's critic accuracy."""
    from mrsisr.initializers.flow import masked_noisy_target

    pipe, step, subjects, _, val_ids = _setup(run, k, ema=True)
    init, gamma = pipe.initializer, float(pipe.schedule.gammas[k])
    std, acc = [], []
    for lr_size in (8, 16, 32):
        b = _maps(subjects, val_ids, lr_size, 32)
        g = torch.Generator().manual_seed(0)
        fake = init.sample(b.cond, k, pipe.schedule, generator=g)
        real = masked_noisy_target(b.x0, b.cond.mask, k, pipe.schedule, g)
        std.append(float((fake - gamma**0.5 * b.x0)[b.cond.mask > 0].std()))
        d_real, d_fake = init.discriminator(real, b.cond), init.discriminator(fake, b.cond)
        acc.append(0.5 * float((d_real > 0).float().mean() + (d_fake < 0).float().mean()))
    print(
        f"step {step}: residual std x8/x4/x2 {[round(v, 4) for v in std]} "
        f"(forward process {(1 - gamma) ** 0.5:.4f}); critic accuracy {[round(a, 3) for a in acc]}"
    )


def critic(run: str, k: int, r1: str, lr: float, steps: int, gamma_r1: float) -> None:
    """Train a fresh critic alone against fixed draws and print its loss and accuracy."""
    from mrsisr.initializers.flow import masked_noisy_target
    from mrsisr.registries import BACKBONES

    pipe, _, subjects, train_ids, _ = _setup(run, k, ema=True)
    b = _maps(subjects, train_ids, 16, 64)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        fake = torch.cat(
            [
                pipe.initializer.sample(b.cond[i : i + 16], k, pipe.schedule, generator=g)
                for i in range(0, 64, 16)
            ]
        )
    var = 1.0 - float(pipe.schedule.gammas[k])
    weight = {"noise": gamma_r1 * var, "plain": gamma_r1, "none": 0.0}[r1]
    torch.manual_seed(0)
    d = BACKBONES.build("patch_critic", width=32, depth=3)
    opt = torch.optim.Adam(d.parameters(), lr=lr, betas=(0.5, 0.99))
    for step in range(steps + 1):
        j = torch.randint(0, 64, (8,), generator=g)
        cond = b.cond[j]
        real = masked_noisy_target(b.x0[j], cond.mask, k, pipe.schedule, g)
        real.requires_grad_(weight > 0)
        d_real, d_fake = d(real, cond), d(fake[j], cond)
        loss = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
        if weight > 0:
            (grad,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
            loss = loss + 0.5 * weight * grad.pow(2).flatten(1).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0:
            acc = 0.5 * float((d_real > 0).float().mean() + (d_fake < 0).float().mean())
            print(f"r1 {r1} lr {lr:g} step {step}: loss {loss.item():.4f} accuracy {acc:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["draws", "critic"])
    ap.add_argument("run", help="a `mrsisr train tdpm` run folder")
    ap.add_argument("k", type=int, help="its T_trunc (pipeline.t_start)")
    ap.add_argument("--r1", choices=["noise", "plain", "none"], default="noise")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--gamma", type=float, default=0.01, help="R1 weight (the recipe's)")
    args = ap.parse_args()
    if not (Path(args.run) / "stages" / "generator" / "latest").is_dir():
        print(
            f"error: {args.run}: no generator checkpoint (stages/generator/latest); "
            "pass the folder of a `mrsisr train tdpm` run",
            file=sys.stderr,
        )
        sys.exit(2)
    torch.set_num_threads(1)
    if args.what == "draws":
        draws(args.run, args.k)
    else:
        critic(args.run, args.k, args.r1, args.lr, args.steps, args.gamma)


if __name__ == "__main__":
    main()
