"""How well the LR magnitude map determines the measured k-space block, on the phantom.

The protocol's LR map is |IFFT(block of FFT(x))|: its own spectrum's block differs from the true
block (the truncated image is complex, and the magnitude folds its negative lobes). This prints
the relative difference `||B F lr - B F x|| / ||B F x||` over fold 0's test maps, per scale, and
how much one projection moves a perfect answer (the ground truth): with the LR map's own block
(`magnitude = false`) and with the LR magnitude under the estimate's phase (the default).

Usage:
    python benchmarks/magnitude_gap.py [--json benchmarks/results/magnitude-gap.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    from mrsisr.consistency import KSpaceConsistency
    from mrsisr.data import MRSIDataset, collate, fold_split, load_dataset
    from mrsisr.data.splits import resolve_data
    from mrsisr.kspace import fft2c, scale_block_mask
    from mrsisr.metrics import batch_metrics

    subjects = load_dataset(resolve_data("phantom"))
    _, _, test_ids = fold_split([s.subject for s in subjects], 0)
    out = {}
    for size, label in ((8, "x8"), (16, "x4"), (32, "x2")):
        data = MRSIDataset(subjects, lr_size=size, subject_ids=test_ids)
        batch = collate([data[i] for i in range(len(data))])
        x, cond = batch.x0.double(), batch.cond
        block = scale_block_mask(cond.scale, 64)
        true, meas = fft2c(x) * block, fft2c(cond.lr.double()) * block
        gap = (
            (meas - true).abs().flatten(1).norm(dim=1) / true.abs().flatten(1).norm(dim=1)
        ).numpy()
        top = batch.max_value.view(-1, 1, 1, 1)
        out[label] = {
            "maps": len(data),
            "block_gap_median": float(np.median(gap)),
            "block_gap_p90": float(np.quantile(gap, 0.9)),
        }
        for mode in ("linear", "magnitude"):
            proj = KSpaceConsistency(magnitude=mode == "magnitude").project(batch.x0, cond)
            moved = batch_metrics(proj * cond.mask * top, batch.x0 * top)
            out[label][f"ground_truth_after_{mode}_projection_ssim"] = float(moved["ssim"].mean())
            out[label][f"ground_truth_after_{mode}_projection_psnr"] = float(moved["psnr"].mean())
        print(label, json.dumps(out[label]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
