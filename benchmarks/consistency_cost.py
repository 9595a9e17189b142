"""Cost of the k-space projection per network evaluation, against the bare network, in one run.

Times FTDDM's denoiser (`--size`) at batch `--batch` with and without the projected-denoiser
wrapper (magnitude-aware k-space projection, `--iterations`), interleaving the two so that both
see the same machine state, and prints the median ms per call and the overhead ratio.

Usage:
    python benchmarks/consistency_cost.py [--size small] [--batch 64] [--repeats 7]
        [--json benchmarks/results/consistency-cost.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="small")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--iterations", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    from mrsisr.consistency import KSpaceConsistency, ProjectedDenoiser
    from mrsisr.recipes import load_recipe
    from mrsisr.types import Condition

    torch.manual_seed(0)
    pipe = load_recipe("ftddm", size=args.size).build().eval()
    net = pipe.denoiser
    wrapped = ProjectedDenoiser(net, KSpaceConsistency(iterations=args.iterations), pipe.schedule)
    b = args.batch
    x = torch.randn(b, 1, 64, 64)
    ones = torch.ones_like(x)
    cond = Condition(ones, torch.rand(b, 1, 64, 64), ones, ones, torch.full((b,), 4.0))
    t = torch.full((b,), 50)
    times: dict[str, list[float]] = {"network": [], "network+projection": []}
    with torch.no_grad():
        net(x, t, cond), wrapped(x, t, cond)  # warm-up
        for _ in range(args.repeats):
            for name, fn in (("network", net), ("network+projection", wrapped)):
                t0 = time.perf_counter()
                fn(x, t, cond)
                times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    ratio = med["network+projection"] / med["network"]
    print(
        f"batch {b}: network {med['network']:.1f} ms, with projection {med['network+projection']:.1f} ms "
        f"per call: +{100 * (ratio - 1):.1f}%"
    )
    if args.json:
        out = {
            "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
            "args": vars(args),
            "median_ms": med,
            "overhead": ratio - 1,
        }
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
