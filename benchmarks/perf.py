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

With `--volume` it times `mrsisr.sr.super_resolve` on a synthetic
volume of `--volume-slices` slices (39 by default) × the 7 metabolites, with the recipe's
pipeline at `--size` and random weights (the time does not depend on them; the paper size has no
shipped weights), batched as `mrsisr sr` batches: the paper's Table 1 reports FTDDM at 1.33 s per
slice sequentially, about 6 minutes for such a volume. The pipeline is timed after a warm-up call
on one slice, with CUDA synchronised; `--bf16` and `--compile` apply to it through
`mrsisr.runtime.accelerate`.

Usage:
    python benchmarks/perf.py --recipe ddpm --size small --batches 1,64 --nfe 10 \
        [--device cuda] [--compile] [--channels-last] [--bf16] [--json out.json] \
        [--subject "ftddm --samples 4 --set sampler.type=dpm_solver_pp --steps 10"]
    python benchmarks/perf.py --recipe ftddm --size paper --batches "" --volume --device cuda \
        [--bf16] [--compile] [--volume-batch 256] [--samples 1] [--set sampler.steps=10 ...]
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


def synthetic_volume(slices: int):
    """A subject of `slices` slices × every metabolite, an elliptic brain mask, random maps."""
    import numpy as np

    from mrsisr.constants import METABOLITES

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    brain = ((yy - 32) / 26) ** 2 + ((xx - 32) / 22) ** 2 <= 1
    mask = np.broadcast_to(brain, (slices, 64, 64))
    maps = {m: (rng.random((slices, 64, 64)) * mask).astype(np.float32) for m in METABOLITES}
    mri = (rng.random((slices, 64, 64)) * mask).astype(np.float32)
    return Subject(
        "volume", maps, {m: mask.copy() for m in METABOLITES}, mri, mri, shape=(slices, 64, 64)
    )


def time_volume(args, device: torch.device) -> dict:
    """Wall time of `super_resolve` on a synthetic volume with the recipe's pipeline at `--size`."""
    from mrsisr.cli.zoo import parse_overrides
    from mrsisr.runtime import accelerate
    from mrsisr.sr import default_batch, super_resolve

    torch.manual_seed(0)
    overrides = parse_overrides(args.set)
    pipe = load_recipe(args.recipe, size=args.size, overrides=overrides).build().to(device).eval()
    if args.channels_last or device.type == "cpu":  # as `mrsisr sr` does on a CPU
        pipe.to(memory_format=torch.channels_last)
    pipe = accelerate(
        pipe, device, "bf16" if args.bf16 else "fp32", "inductor" if args.compile else None
    )
    batch = args.volume_batch or default_batch(device)
    volume = synthetic_volume(args.volume_slices)
    run = lambda sub: super_resolve(  # noqa: E731
        pipe, sub, 4, samples=args.samples, batch=batch, device=device
    )
    run(synthetic_volume(1))  # warm-up: allocator, kernels, compilation
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    result = run(volume)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    row = {
        "recipe": args.recipe,
        "size": args.size,
        "slices": args.volume_slices,
        "maps": result.info["maps"],
        "samples": args.samples,
        "nfe": result.info["nfe"],
        "batch": batch,
        "overrides": args.set,
        "precision": "bf16" if args.bf16 else "fp32",
        "compile": bool(args.compile),
        "seconds": round(seconds, 2),
        "seconds_per_map": round(seconds / result.info["maps"], 4),
    }
    print(
        f"  volume: {row['slices']} slices x {len(volume.maps)} metabolites = {row['maps']} maps, "
        f"{row['samples']} sample(s), NFE {row['nfe']}, batch {batch}: {seconds:.1f} s "
        f"({1000 * seconds / row['maps']:.0f} ms per map)"
    )
    return row


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
           "batch": info.get("batch"), "seconds": round(seconds, 1)}  # fmt: skip
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
    ap.add_argument("--volume", action="store_true", help="time a synthetic volume (see above)")
    ap.add_argument("--volume-slices", type=int, default=39)
    ap.add_argument("--volume-batch", type=int, default=0, help="images per NFE; 0: sr's default")
    ap.add_argument("--samples", type=int, default=1, help="samples per map in --volume")
    ap.add_argument("--set", action="append", default=[], help="recipe override for --volume")
    args = ap.parse_args()
    subject_row = time_subject(args.subject, args.device) if args.subject else None
    volume_row = time_volume(args, torch.device(args.device)) if args.volume else None

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
                    "volume": volume_row,
                },
                fh,
                indent=2,
            )


if __name__ == "__main__":
    main()
