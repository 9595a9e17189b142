"""Quick quality check of a trained pipeline against the zero-filled LR input (the trivial baseline).

Evaluates fold K's test subjects of the phantom cohort (or a data folder) at the paper's scales
with the paper's metrics (SPEC §2: whole image, prediction masked, data range of the ground truth),
and prints mean ± std per scale. A stand-in until `mrsisr bench` exists.

Usage:
    python benchmarks/quick_eval.py munet_fs_cwgan --size small [--weights RUN] [--limit 200]
        [--set pipeline.tau=0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import mrsisr
from mrsisr.data import MRSIDataset, collate, fold_split, load_dataset
from mrsisr.data.splits import resolve_data
from mrsisr.metrics import batch_metrics, wilcoxon


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipe")
    ap.add_argument("--size", default="small")
    ap.add_argument("--weights", default=None, help="run folder or weights file (default: shipped)")
    ap.add_argument("--data", default="phantom")
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--limit", type=int, default=200, help="maps per scale")
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--set", action="append", default=[], help="recipe override KEY=VALUE")
    args = ap.parse_args()
    from mrsisr.cli.zoo import parse_overrides

    torch.set_num_threads(max(1, torch.get_num_threads()))
    pipe = mrsisr.load(
        args.recipe, size=args.size, weights=args.weights, overrides=parse_overrides(args.set)
    )
    subjects = load_dataset(resolve_data(args.data))
    _, _, test_ids = fold_split([s.subject for s in subjects], args.fold)
    print(f"{args.recipe} ({args.size}), fold {args.fold} test subjects {', '.join(test_ids)}")
    for lr_size, label in ((8, "x8"), (16, "x4"), (32, "x2")):
        data = MRSIDataset(subjects, lr_size=lr_size, subject_ids=test_ids)
        rng = np.random.default_rng(0)
        idx = rng.permutation(len(data))[: args.limit]
        scores, base, seconds = [], [], 0.0
        for start in range(0, len(idx), args.batch):
            batch = collate([data[int(i)] for i in idx[start : start + args.batch]])
            scale = batch.max_value.view(-1, 1, 1, 1)
            t0 = time.perf_counter()
            x = pipe.sample(batch.cond, generator=torch.Generator().manual_seed(start))
            seconds += time.perf_counter() - t0
            gt = batch.x0 * scale
            scores.append(batch_metrics(x * batch.cond.mask * scale, gt))
            base.append(batch_metrics(batch.cond.lr.clamp(0, 1) * batch.cond.mask * scale, gt))
        cat = {k: torch.cat([s[k] for s in scores]).numpy() for k in scores[0]}
        ref = {k: torch.cat([s[k] for s in base]).numpy() for k in base[0]}
        n = len(cat["ssim"])
        print(
            f"  {label}: {n} maps, {seconds / n * 1000:.1f} ms/map | "
            f"model SSIM {cat['ssim'].mean():.3f}±{cat['ssim'].std():.3f} "
            f"PSNR {cat['psnr'].mean():.2f}±{cat['psnr'].std():.2f} NRMSE {cat['nrmse'].mean():.3f} | "
            f"LR input SSIM {ref['ssim'].mean():.3f} PSNR {ref['psnr'].mean():.2f} NRMSE {ref['nrmse'].mean():.3f} | "
            f"Wilcoxon p(SSIM) {wilcoxon(cat['ssim'], ref['ssim']):.1e}"
        )


if __name__ == "__main__":
    import sys

    from mrsisr.errors import MrsisrError

    try:
        main()
    except MrsisrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
