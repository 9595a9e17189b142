"""Which diffusers schedulers keep the data law through the `diffusers` adapter, from T and t = 100.

Gaussian data `x0 ~ N(0.5, 0.15^2)` per pixel with its exact epsilon-predictor (the oracle of
`tests/test_samplers.py`): each scheduler runs through `SAMPLERS.build("diffusers", ...)` from
pure noise at T = 1000 and from an exact draw of `q(x_100 | x0)` (a truncated start), at 10 and
20 steps, and the output's mean and relative std error are reported. An exact sampler has mean
0.5 and std error 0.

Usage:
    python benchmarks/diffusers_schedulers.py [--json benchmarks/results/diffusers-schedulers.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import torch

SCHEDULERS = [
    "DDPMScheduler", "DDIMScheduler", "DPMSolverMultistepScheduler", "DPMSolverSinglestepScheduler",
    "UniPCMultistepScheduler", "DEISMultistepScheduler", "SASolverScheduler", "PNDMScheduler",
    "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler", "HeunDiscreteScheduler",
    "KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler", "LMSDiscreteScheduler",
    "LCMScheduler", "TCDScheduler", "DPMSolverSDEScheduler", "EDMEulerScheduler",
]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None)
    ap.add_argument("--size", type=int, default=96, help="samples = size^2")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_samplers import S, V, ones_cond, optimal_eps, start

    from mrsisr.registries import SAMPLERS

    rows = []
    for name in SCHEDULERS:
        for t0 in (1000, 100):
            for steps in (10, 20):
                row = {"scheduler": name, "t_start": t0, "steps": steps}
                try:
                    xs = start(t0, (1, 1, args.size, args.size), torch.Generator().manual_seed(3))
                    cond = ones_cond(1, args.size).to(dtype=torch.float64)
                    s = SAMPLERS.build("diffusers", scheduler=name, steps=steps, clamp_output=False)
                    x = s(
                        optimal_eps,
                        xs.double(),
                        t0,
                        cond,
                        S,
                        generator=torch.Generator().manual_seed(0),
                    )
                    row |= {
                        "nfe": s.nfe(t0),
                        "mean": float(x.mean()),
                        "std_error": float(x.std()) / V - 1,
                    }
                except Exception as exc:  # report, do not stop: this is a survey
                    row["error"] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:120]}"
                rows.append(row)
                print(row, flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
