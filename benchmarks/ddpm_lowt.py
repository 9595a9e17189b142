"""Where DDPM-1000 loses to the zero-filled input at ×2: its chain's low-t steps.

Runs the shipped DDPM `small` chain (1000 ancestral steps) but hands every step with t <= CUT
to FTDDM's truncated UNet (trained on t <= 100 only), on the same 20 maps, seed, batch (16) and
channels-last weights as the truncation study's `ddpm-1000` row, so the two rows share their
noise draws and pair map by map. If the hybrid beats the input where plain DDPM-1000 does not,
the deficit lies in how well DDPM's UNet denoises the last CUT steps, not in the chain's start.

Usage (about 20 CPU-minutes on the 2-core build machine):
    python benchmarks/ddpm_lowt.py [--cut 100]
Writes benchmarks/results/ddpm-lowt{CUT}-x2-20maps.json (per-map scores and the p-values).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.stats import wilcoxon
from torch import nn

import mrsisr
from mrsisr.eval.bench import run_bench

ROOT = Path(__file__).resolve().parents[1]


class Switch(nn.Module):
    """ε from `high` for t > cut and from `low` for t <= cut (the chain passes one t per call)."""

    def __init__(self, high: nn.Module, low: nn.Module, cut: int) -> None:
        super().__init__()
        self.high, self.low, self.cut = high, low, cut

    def forward(self, x, t, cond):  # noqa: ANN001, ANN201
        if bool((t <= self.cut).all()):
            return self.low(x, t, cond)
        if bool((t <= self.cut).any()):
            raise ValueError("a batch mixes timesteps on both sides of the cut")
        return self.high(x, t, cond)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cut", type=int, default=100, help="largest t given to FTDDM's UNet")
    args = ap.parse_args()
    ddpm = mrsisr.load("ddpm", size="small")
    ddpm.denoiser = Switch(ddpm.denoiser, mrsisr.load("ftddm", size="small").denoiser, args.cut)
    name = f"ddpm-lowt{args.cut}"
    res = run_bench(
        [(name, ddpm)], scales=[2], limit=50, slow_limit=20, batch=16, channels_last=True,
        uq_samples=0, seed=0, progress=False,
    )  # fmt: skip
    got, lr = res.scores[(name, 2)], res.scores[("lr_input", 2)]
    n = len(got["ssim"])
    study = json.loads((ROOT / "benchmarks/results/study-small-truncation.json").read_text())
    ref = study["scores"]["ddpm-1000@2"]
    if [list(m) for m in ref["maps"]] != [list(m) for m in res.maps[:n]]:
        raise SystemExit("the maps differ from the truncation study's ddpm-1000 row")
    out = {"cut": args.cut, "maps": res.maps[:n], "machine": res.machine}
    for m in ("ssim", "psnr"):
        a, b, c = got[m], np.asarray(ref[m]), lr[m][:n]
        out[m] = {"hybrid": a.tolist(), "ddpm_1000": b.tolist(), "lr_input": c.tolist()}
        out[f"{m}_mean"] = {"hybrid": a.mean(), "ddpm_1000": b.mean(), "lr_input": c.mean()}
        out[f"p_{m}"] = {
            "hybrid_vs_lr": wilcoxon(a, c).pvalue,
            "hybrid_vs_ddpm": wilcoxon(a, b).pvalue,
        }
        print(m, {k: round(float(v), 4) for k, v in out[f"{m}_mean"].items()}, out[f"p_{m}"])
    path = ROOT / f"benchmarks/results/ddpm-lowt{args.cut}-x2-20maps.json"
    path.write_text(json.dumps(out, indent=1, default=float))
    print("wrote", path)


if __name__ == "__main__":
    main()
