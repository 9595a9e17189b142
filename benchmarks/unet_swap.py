"""Start or UNet: why respaced DDPM-100 overtook FTDDM once DDPM's UNet was fine-tuned at small t.

FTDDM draws x_100 with its flow and denoises it with its truncated UNet (3400 steps, all at
t <= 100); respaced DDPM-100 starts from Gaussian noise at t = 1000 with DDPM's UNet (14,500
steps, roughly 4000 of them at t <= 100 by the low-t fine-tunes' draw fractions). This script
runs FTDDM's chain as shipped (flow start, 100 ancestral steps, tau_d 0.9) but with DDPM's UNet as the
denoiser, on the consistency study's 100 maps per scale (seed 0, 16 maps per call,
channels-last weights), and pairs it map by map with that study's kept `ftddm` and
`ddpm_respace` rows. If the hybrid matches or beats respaced DDPM, the gap is the UNet's training,
not the flow start.

`--steps N` replaces the 100 ancestral steps by N respaced ones from x_100 (tau_d 0.9), the
step size respaced DDPM-100 takes below t = 100 when N = 10; `--unet ftddm` keeps FTDDM's own
UNet, to separate the step schedule from the UNet.

Usage (about 6 CPU-minutes per scale on the 2-core build machine for 100 steps):
    python benchmarks/unet_swap.py [--scales 8,4] [--steps 10] [--unet ddpm|ftddm]
Writes benchmarks/results/ftddm-with-{UNET}-unet[-respace{N}]-100maps.json (means, per-map
scores, p-values) and the bench's own record, bench-small-ftddm-with-...-100maps.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import NoReturn

import numpy as np
from scipy.stats import wilcoxon

import mrsisr
from mrsisr.eval.bench import run_bench

ROOT = Path(__file__).resolve().parents[1]
PARTIAL = ROOT / "benchmarks/studies-partial/.consistency.partial.json"
METRICS = ("ssim", "psnr", "nrmse")
SETTINGS = {"map_order": "seeded", "fold": 0, "limit": 100, "seed": 0, "batch": 16}
"""The study settings this script repeats: the partial file keeps scores, not map names, so the
pairing by position holds only for the same seeded choice and order of maps."""


def fail(msg: str) -> NoReturn:
    """Print one line to stderr and exit with status 2."""
    print(f"{PARTIAL}: {msg}", file=sys.stderr)
    raise SystemExit(2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", default="8,4", help="comma-separated upscaling factors")
    ap.add_argument("--steps", type=int, default=0, help="respaced steps from x_100 (0: 100)")
    ap.add_argument("--unet", choices=("ddpm", "ftddm"), default="ddpm", help="whose UNet")
    args = ap.parse_args()
    scales = [s for s in args.scales.split(",") if s]
    if not scales or any(s not in ("8", "4", "2") for s in scales):
        ap.error(f"--scales {args.scales!r}: use some of 8,4,2")
    scales = [int(s) for s in scales]
    try:
        kept = json.loads(PARTIAL.read_text())
        identity, entries = kept["identity"], kept["entries"]
    except (OSError, ValueError, KeyError) as err:
        fail(f"unreadable ({err}); run the consistency study first")
    other = {k: identity.get(k) for k, v in SETTINGS.items() if identity.get(k) != v}
    if other:
        fail(f"kept with other settings {other}; the pairing needs {SETTINGS}")
    missing = [
        f"{r}|x{s}|100" for s in scales for r in ("ftddm", "ddpm_respace")
        if f"{r}|x{s}|100" not in entries
    ]  # fmt: skip
    if missing:
        fail(f"rows {missing} not kept yet; run the consistency study")
    sampler = {"sampler": {"type": "respace", "steps": args.steps}} if args.steps else None
    pipe = mrsisr.load("ftddm", size="small", overrides=sampler)
    if args.unet == "ddpm":
        pipe.denoiser = mrsisr.load("ddpm", size="small").denoiser
    tag = f"{args.unet}-unet" + (f"-respace{args.steps}" if args.steps else "")
    name = f"ftddm-{tag}"
    res = run_bench(
        [(name, pipe)], scales=scales, limit=SETTINGS["limit"], batch=SETTINGS["batch"],
        seed=SETTINGS["seed"], fold=SETTINGS["fold"], channels_last=True, uq_samples=0,
        progress=True,
    )  # fmt: skip
    raw = ROOT / f"benchmarks/results/bench-small-ftddm-with-{tag}-100maps.json"
    raw.write_text(json.dumps(res.to_dict(), indent=1))  # kept first: the bench's own record
    out: dict = {
        "unet": args.unet,
        "steps": args.steps or 100,
        "machine": res.machine,
        "maps": res.maps,
        "scales": {},
    }
    for s in scales:
        got, lr = res.scores[(name, s)], res.scores[("lr_input", s)]
        ref = {r: entries[f"{r}|x{s}|100"]["values"] for r in ("ftddm", "ddpm_respace")}
        sec = next(r.sec_per_slice for r in res.rows if r.model == name and r.scale == s)
        row: dict = {"seconds_per_map": sec}
        for m in METRICS:
            a = np.asarray(got[m])
            row[m] = {"hybrid": a.tolist()}
            row[f"{m}_mean"] = {"hybrid": a.mean(), "lr_input": np.mean(lr[m])}
            for r, vals in ref.items():
                b = np.asarray(vals[m])
                row[f"{m}_mean"][r] = b.mean()
                row[f"p_{m}_vs_{r}"] = wilcoxon(a, b).pvalue
                row[f"better_{m}_vs_{r}"] = int(((a < b) if m == "nrmse" else (a > b)).sum())
            row[f"p_{m}_vs_lr"] = wilcoxon(a, np.asarray(lr[m])).pvalue
        out["scales"][f"x{s}"] = row
        print(
            f"x{s}",
            {m: {k: round(float(v), 4) for k, v in row[f"{m}_mean"].items()} for m in METRICS},
            {k: f"{v:.2g}" for k, v in row.items() if k.startswith("p_")},
        )
    path = ROOT / f"benchmarks/results/ftddm-with-{tag}-100maps.json"
    path.write_text(json.dumps(out, indent=1, default=float))
    print("wrote", path)


if __name__ == "__main__":
    main()
