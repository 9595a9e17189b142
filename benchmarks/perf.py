"""Speed of the denoiser and of each sampler: ms per image per network evaluation (NFE).

Measures, for one recipe's denoiser (random weights: speed does not depend on them):

- the bare network: `--nfe` back-to-back `denoiser(x_t, t, cond)` calls, divided by the batch
  size and `--nfe`;
- each sampler (ancestral, respace, DPM-Solver++) running `--nfe` evaluations, divided by batch
  size and NFE; the difference to the bare network is the sampler's own overhead (target: 10% at
  most);

at batch 1 and 64 (`--batches`), optionally with `torch.compile`, channels_last memory format and
bf16 autocast, so that each option is judged by measurement. Every timing is the median of
`--repeats` runs after a warm-up run.

With `--subject "ARGS"` it also times one whole phantom subject through the `mrsisr sr`
command (a subprocess, as a user runs it: loading, every slice and metabolite, writing), e.g.
`--subject "ftddm --samples 4 --set sampler.type=dpm_solver_pp --steps 10"`; the subject is the
first fold-0 test subject of the default phantom cohort.

Usage:
    python benchmarks/perf.py --recipe ddpm --size small --batches 1,64 --nfe 10 \
        [--device cuda] [--compile] [--channels-last] [--bf16] [--json out.json] \
        [--subject "ftddm --samples 4 --set sampler.type=dpm_solver_pp --steps 10"]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import time

import torch

from mrsisr.data import MRSIDataset, Subject, collate
from mrsisr.recipes import load_recipe
from mrsisr.registries import SAMPLERS


def make_cond(batch: int, device: torch.device):
    """A synthetic condition batch (the values do not matter for speed)."""
    import numpy as np

    m = np.zeros((1, 64, 64), np.float32)
    m[0, 8:56, 8:56] = 1.0
    sub = Subject("perf", {"NAA": m}, {"NAA": m > 0}, m + 0.5, m + 0.5, shape=(1, 64, 64))
    item = MRSIDataset([sub], metabolites=("NAA",), lr_size=16)[0]
    return collate([item] * batch).cond.to(device)


def timed(fn, device: torch.device, repeats: int) -> float:
    """Median wall time of `fn()` in seconds, after one warm-up call."""
    fn()
    out = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def time_subject(sr_args: str, device: str) -> dict:
    """Wall time of `mrsisr sr SR_ARGS` on the first fold-0 test subject of the phantom cohort."""
    import shlex
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from mrsisr.data import fold_split, phantom_cohort

    cohort = phantom_cohort()
    ids = sorted(p.name for p in Path(cohort).iterdir() if p.is_dir())
    subject = Path(cohort) / fold_split(ids, fold=0)[2][0]
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "mrsisr", "sr", *shlex.split(sr_args), "--input", str(subject)]
        cmd += ["--scale", "4", "--device", device, "--out", f"{tmp}/sr"]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - t0
        info = json.loads(Path(f"{tmp}/sr/sr.json").read_text())
    row = {"command": shlex.join(["mrsisr", "sr", *cmd[4:]]), "subject": subject.name,
           "maps": info["maps"], "samples": info["samples"], "nfe": info["nfe"],
           "seconds": round(seconds, 1)}  # fmt: skip
    print(f"  whole subject: {row['maps']} maps x {row['samples']} samples, NFE {row['nfe']}: "
          f"{seconds:.0f} s  ({row['command']})")  # fmt: skip
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="ddpm")
    ap.add_argument("--size", default="small")
    ap.add_argument(
        "--batches", default="1,64", help="comma-separated; '' skips the network timings"
    )
    ap.add_argument("--nfe", type=int, default=10, help="network evaluations per sampler run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--compile", action="store_true", help="torch.compile the denoiser")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast")
    ap.add_argument("--json", default=None, help="write the rows here")
    ap.add_argument("--subject", default=None, help="time `mrsisr sr ARGS` on one phantom subject")
    args = ap.parse_args()
    subject_row = time_subject(args.subject, args.device) if args.subject else None

    device = torch.device(args.device)
    pipe = load_recipe(args.recipe, size=args.size).build().to(device).eval()
    net = pipe.denoiser
    if args.channels_last:
        net = net.to(memory_format=torch.channels_last)
    if args.compile:
        net = torch.compile(net)
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if args.bf16 else contextlib.nullcontext()
    )
    samplers = {
        "ancestral": SAMPLERS.build("ancestral"),
        "respace": SAMPLERS.build("respace", steps=args.nfe),
        "dpm_solver_pp": SAMPLERS.build("dpm_solver_pp", steps=args.nfe),
    }
    options = [
        o
        for o, on in (
            ("compile", args.compile),
            ("channels_last", args.channels_last),
            ("bf16", args.bf16),
        )
        if on
    ] or ["none"]
    machine = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"
    )
    rows = []
    print(f"{args.recipe} ({args.size}) denoiser on {machine}, options: {', '.join(options)}")
    for batch in (int(b) for b in args.batches.split(",") if b):
        cond = make_cond(batch, device)
        x = torch.randn(batch, 1, 64, 64, device=device)
        if args.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        t = torch.full((batch,), args.nfe, device=device, dtype=torch.long)
        with torch.no_grad(), autocast:
            # the same number of calls as a sampler run, so that both amortise alike
            bare = (
                timed(
                    lambda x=x, t=t, c=cond: [net(x, t, c) for _ in range(args.nfe)],
                    device,
                    args.repeats,
                )
                / batch
                / args.nfe
                * 1000
            )
            rows.append(
                {"what": "network", "batch": batch, "ms_per_image_per_nfe": bare, "overhead": 0.0}
            )
            print(f"  batch {batch:3d}  network        {bare:8.2f} ms/image/NFE")
            for name, sampler in samplers.items():
                t_start = args.nfe if name == "ancestral" else 100
                nfe = sampler.nfe(t_start)
                sec = timed(
                    lambda s=sampler, ts=t_start, x=x, c=cond: s(net, x, ts, c, pipe.schedule),
                    device,
                    args.repeats,
                )
                ms = sec / batch / nfe * 1000
                rows.append(
                    {
                        "what": name,
                        "batch": batch,
                        "nfe": nfe,
                        "ms_per_image_per_nfe": ms,
                        "overhead": ms / bare - 1,
                    }
                )
                print(
                    f"  batch {batch:3d}  {name:14s} {ms:8.2f} ms/image/NFE  "
                    f"(sampler overhead {100 * (ms / bare - 1):+.1f}%, NFE {nfe})"
                )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {
                    "recipe": args.recipe,
                    "size": args.size,
                    "machine": machine,
                    "options": options,
                    "torch": torch.__version__,
                    "rows": rows,
                    "subject": subject_row,
                },
                fh,
                indent=2,
            )


if __name__ == "__main__":
    main()
