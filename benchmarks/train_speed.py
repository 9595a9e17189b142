"""Training throughput: samples per second for each stage of each recipe, and where the time goes.

Each stage runs the training engine's own step (the same batch plan, loss closure, Adam and timm
EMA) for `--steps` timed steps after `--warmup` untimed ones, and splits the step time into data
(batch assembly and augmentation), forward, backward, optimiser and EMA. The share of the step
spent in the network's forward and backward passes is the figure of merit: the rest is overhead.

Options compare settings in one run: `--channels-last`, `--compile`, `--adam-loop` (Adam's
per-parameter loop, the engine's CPU optimiser before it moved to the fused kernel) and `--threads`
each add a configuration, timed after the baseline, so a before/after ratio comes from one
process on the same machine state; `--interleave N` repeats the configurations N times in turn
(medians are reported), which evens out a machine whose load drifts.

Usage:
    python benchmarks/train_speed.py --recipes ddpm,ftddm --steps 20 [--channels-last]
        [--compile] [--adam-loop] [--interleave 3] [--threads 1,2]
        [--json benchmarks/results/train-speed.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections import defaultdict
from pathlib import Path

import torch

PARTS = ("data", "forward", "backward", "optimizer", "ema")


def time_stage(
    stage, plan, steps: int, warmup: int, ema_decay: float = 0.9999, adam: dict | None = None
) -> dict:
    """Run one stage's training step `warmup + steps` times; return per-part seconds per step.

    `adam` are the extra Adam arguments (default: the engine's, `optimizer_options("cpu")`).
    """
    from timm.utils import ModelEmaV3

    from mrsisr.runtime import optimizer_options
    from mrsisr.train.parallel import trainable_params as _params

    adam = optimizer_options("cpu") if adam is None else adam
    opt = torch.optim.Adam(_params(stage.modules), lr=stage.lr, betas=stage.betas, **adam)
    copt = (
        torch.optim.Adam(_params(stage.critic_modules), lr=stage.critic_lr or stage.lr, **adam)
        if stage.adversarial
        else None
    )
    emas = {k: ModelEmaV3(m, decay=ema_decay, use_warmup=True) for k, m in stage.modules.items()}
    spent: dict[str, float] = defaultdict(float)
    for step in range(warmup + steps):
        clock = {}
        t = time.perf_counter()
        batch = plan.batch(step, torch.device("cpu"))
        gen = torch.Generator().manual_seed(step)
        clock["data"] = time.perf_counter() - t
        fwd = bwd = optim = 0.0
        if copt is not None:
            for _ in range(stage.critic_steps):
                t = time.perf_counter()
                closs = stage.critic_loss(batch, gen)
                t2 = time.perf_counter()
                copt.zero_grad(set_to_none=True)
                closs.backward()
                t3 = time.perf_counter()
                copt.step()
                fwd, bwd, optim = fwd + t2 - t, bwd + t3 - t2, optim + time.perf_counter() - t3
        t = time.perf_counter()
        loss = stage.loss(batch, gen)
        t2 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t3 = time.perf_counter()
        if stage.grad_clip:
            torch.nn.utils.clip_grad_norm_(_params(stage.modules), stage.grad_clip)
        opt.step()
        t4 = time.perf_counter()
        for k, ema in emas.items():
            ema.update(stage.modules[k], step=step + 1)
        t5 = time.perf_counter()
        clock.update(forward=fwd + t2 - t, backward=bwd + t3 - t2, optimizer=optim + t4 - t3)
        clock["ema"] = t5 - t4
        if step >= warmup:
            for k, v in clock.items():
                spent[k] += v
    per_step = {k: spent[k] / steps for k in PARTS}
    total = sum(per_step.values())
    return {
        "seconds_per_step": total,
        "samples_per_s": plan.batch_size / total,
        "parts_s": per_step,
        "network_share": (per_step["forward"] + per_step["backward"]) / total,
    }


def summarize(rows: list[dict]) -> list[dict]:
    """Median step time, optimiser time and network share per (recipe, stage, config, threads)."""
    import statistics

    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["recipe"], r["stage"], r["config"], r["threads"])].append(r)
    return [
        {
            "recipe": key[0],
            "stage": key[1],
            "config": key[2],
            "threads": key[3],
            "repeats": len(rs),
            "seconds_per_step": statistics.median(r["seconds_per_step"] for r in rs),
            "optimizer_s": statistics.median(r["parts_s"]["optimizer"] for r in rs),
            "network_share": statistics.median(r["network_share"] for r in rs),
        }
        for key, rs in groups.items()
    ]


def configure(pipe, channels_last: bool, compile_: bool):
    """Apply a configuration to the pipeline's trainable networks in place."""
    if channels_last:
        pipe.to(memory_format=torch.channels_last)
    if compile_:
        for name in ("denoiser", "network"):
            net = getattr(pipe, name, None)
            if isinstance(net, torch.nn.Module):
                setattr(pipe, name, torch.compile(net))
    return pipe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", default="ddpm,ftddm,tdpm,munet_fs_cwgan,flow_enhancer")
    ap.add_argument("--size", default="small")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", default=None, help="comma-separated thread counts to compare")
    ap.add_argument("--channels-last", action="store_true", help="also time channels-last")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile")
    ap.add_argument("--adam-loop", action="store_true", help="also time Adam's per-parameter loop")
    ap.add_argument(
        "--interleave", type=int, default=1, help="repeat the configurations in turn N times"
    )
    ap.add_argument("--stages", default=None, help="only these stage names (comma-separated)")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args()

    from mrsisr.data.splits import fold_datasets, resolve_data
    from mrsisr.recipes import load_recipe
    from mrsisr.train.parallel import BatchPlan

    train, _, _ = fold_datasets(resolve_data("phantom"), 0)
    threads = (
        [int(t) for t in args.threads.split(",")] if args.threads else [torch.get_num_threads()]
    )
    configs = [("baseline", False, False, None)]
    if args.channels_last:
        configs.append(("channels_last", True, False, None))
    if args.compile:
        configs.append(("compile", False, True, None))
    if args.adam_loop:
        configs.append(("adam_loop", False, False, {"foreach": False}))
    wanted = set(args.stages.split(",")) if args.stages else None
    rows = []
    for name in args.recipes.split(","):
        for n_threads in threads:
            torch.set_num_threads(n_threads)
            for rep in range(args.interleave):
                for label, cl, comp, adam in configs:
                    torch.manual_seed(0)
                    pipe = configure(load_recipe(name, size=args.size).build(), cl, comp)
                    for index, stage in enumerate(pipe.training_stages()):
                        if wanted and stage.name not in wanted:
                            continue
                        plan = BatchPlan(train, args.batch, seed=index)
                        res = time_stage(stage, plan, args.steps, args.warmup, adam=adam)
                        row = {
                            "recipe": name,
                            "stage": stage.name,
                            "config": label,
                            "threads": n_threads,
                            "batch": args.batch,
                            "repeat": rep,
                            **res,
                        }
                        rows.append(row)
                        parts = " ".join(f"{k} {v * 1000:.0f}" for k, v in res["parts_s"].items())
                        print(
                            f"{name:15s} {stage.name:12s} {label:13s} {n_threads} thr: "
                            f"{res['samples_per_s']:6.2f} samples/s, {res['seconds_per_step']:.3f} s/step, "
                            f"network {100 * res['network_share']:.1f}% (ms: {parts})",
                            flush=True,
                        )
    medians = summarize(rows)
    if args.interleave > 1:
        for m in medians:
            print(
                f"median of {m['repeats']}: {m['recipe']:15s} {m['stage']:12s} {m['config']:13s} "
                f"{m['threads']} thr: {m['seconds_per_step']:.3f} s/step, "
                f"optimizer {m['optimizer_s'] * 1000:.0f} ms, network {100 * m['network_share']:.1f}%"
            )
    if args.json:
        out = {
            "machine": f"{platform.machine()}, {torch.get_num_threads()} threads max, torch {torch.__version__}",
            "args": vars(args),
            "rows": rows,
            "medians": medians,
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
