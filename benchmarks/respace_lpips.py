"""Fidelity against perceptual distance for respaced DDPM at several step counts, and FTDDM.

The truncation study (Fig. 5) scores SSIM, PSNR and NRMSE only. On the phantom, respaced DDPM
gets *better* in those as its steps shrink, where the paper's Fig. 5 has it degrade. This script
checks the likely reason, the perception-distortion trade-off: a shorter chain lands closer to
the conditional mean, which wins SSIM and PSNR and loses detail. It benches `ddpm_respace` at
each step count and FTDDM's 101-NFE chain on the same maps, with LPIPS (AlexNet and VGG) beside
the study's metrics; p-values are paired two-sided Wilcoxon against the first row.

Usage:
    python benchmarks/respace_lpips.py [--steps 100,50,20] [--scale 4] [--limit 50]
        [--json benchmarks/results/respace-lpips-x4-50maps.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time


def main() -> None:
    """Bench the rows and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="100,50,20", help="respaced step counts")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--limit", type=int, default=50, help="maps (the bench's seeded subset)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--json", default="respace-lpips.json")
    args = parser.parse_args()
    try:
        steps = [int(k) for k in args.steps.split(",")]
    except ValueError:
        parser.error(f"--steps {args.steps!r}: give whole step counts, e.g. 100,20")
    if any(k < 1 or k > 1000 for k in steps):
        parser.error(f"--steps {args.steps!r}: each count must lie in 1-1000")

    from mrsisr.eval.bench import run_bench
    from mrsisr.zoo import load

    models = [
        (f"respace-{k}", load("ddpm_respace", size="small", overrides={"sampler": {"steps": k}}))
        for k in steps
    ]
    models.append(("ftddm-100", load("ftddm", size="small")))
    start = time.time()
    result = run_bench(
        models,
        scales=[args.scale],
        limit=args.limit,
        seed=0,
        device="cpu",
        uq_samples=0,
        lpips=("alex", "vgg"),
        batch=args.batch,
        channels_last=True,
        progress=False,
    )
    rows = [dataclasses.asdict(r) for r in result.rows]
    for r in rows:
        print(
            f"{r['model']:12s} SSIM {r['ssim_mean']:.3f} PSNR {r['psnr_mean']:.2f} "
            f"LPIPS-VGG {r['lpips_vgg_mean']:.3f} LPIPS-Alex {r['lpips_alex_mean']:.3f}"
        )
    config = {"steps": steps, "scale": args.scale, "limit": args.limit, "batch": args.batch}
    out = {"rows": rows, "seconds": time.time() - start, "config": config}
    out["machine"] = result.machine
    with open(args.json, "w") as f:
        json.dump(out, f, indent=1, default=str)


if __name__ == "__main__":
    main()
