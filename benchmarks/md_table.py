"""Render a bench or study `results.json` as a Markdown table (for the docs).

The docs' tables are generated from the JSON files under `benchmarks/results/`, never typed in.

Usage:
    python benchmarks/md_table.py benchmarks/results/study-small-solver.json [--columns steps,sampler]
    python benchmarks/md_table.py RESULTS.json --pivot ssim,psnr   # a row per variant, a column per scale
    python benchmarks/md_table.py RESULTS.json --pivot ssim --with-p  # + p against the reference row
"""

from __future__ import annotations

import argparse
import json


def fmt(mean: float | None, std: float | None, digits: int) -> str:
    """`mean ± std` with `digits` decimals (empty when missing)."""
    if mean is None:
        return ""
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if std is not None else f"{mean:.{digits}f}"


def pivot(rows: list[dict], metrics: list[str], with_p: bool = False) -> None:
    """Print one row per variant with `metric ×scale` columns (mean ± std); with `with_p`, each
    cell also gives the row's paired Wilcoxon p against the study's reference row (the first)."""
    scales = sorted({r["scale"] for r in rows}, reverse=True)
    names = list(dict.fromkeys(r.get("variant", r.get("model")) for r in rows))
    by = {(r.get("variant", r.get("model")), r["scale"]): r for r in rows}
    head = ["variant", "NFE"] + [f"{m.upper()} ×{s}" for m in metrics for s in scales]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for n in names:
        first = next(by[(n, s)] for s in scales if (n, s) in by)
        cells = [n, str(first["nfe"])]
        for m in metrics:
            digits = 2 if m == "psnr" else 3
            for s in scales:
                r = by.get((n, s))
                cell = fmt(r[f"{m}_mean"], r[f"{m}_std"], digits) if r else ""
                p = r.get(f"p_{m}") if r else None
                if with_p and p is not None:
                    cell += f" (p {p:.0e})" if p < 1e-3 else f" (p {p:.2g})"
                cells.append(cell)
        print("| " + " | ".join(cells) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json")
    ap.add_argument("--columns", default="", help="extra row keys to show after the variant")
    ap.add_argument("--no-time", action="store_true", help="leave out s/slice")
    ap.add_argument("--pivot", default="", help="metrics to show as one column per scale")
    ap.add_argument("--with-p", action="store_true", help="pivot: add p against the reference")
    args = ap.parse_args()
    data = json.load(open(args.json))
    if args.pivot:
        pivot(data["rows"], [m for m in args.pivot.split(",") if m], args.with_p)
        return
    extra = [c for c in args.columns.split(",") if c]
    lpips = [k for k in ("lpips_alex", "lpips_vgg") if data["rows"][0].get(f"{k}_mean") is not None]
    head = ["variant", *extra, "scale", "NFE"] + ([] if args.no_time else ["s/slice"])
    vs_lr = any(r.get("p_ssim_lr") is not None for r in data["rows"])
    head += ["NRMSE", "PSNR", "SSIM", *[k.replace("lpips_", "LPIPS ") for k in lpips], "p(SSIM)"]
    if vs_lr:
        head += ["p(SSIM) vs LR", "p(PSNR) vs LR"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in data["rows"]:
        cells = [r.get("variant", r.get("model")), *[str(r.get(c, "")) for c in extra]]
        cells += [f"×{r['scale']}", str(r["nfe"])]
        if not args.no_time:
            cells.append(f"{r['sec_per_slice']:.2f}" if r["nfe"] else "")
        cells += [
            fmt(r["nrmse_mean"], r["nrmse_std"], 3),
            fmt(r["psnr_mean"], r["psnr_std"], 2),
            fmt(r["ssim_mean"], r["ssim_std"], 3),
            *[fmt(r[f"{k}_mean"], r[f"{k}_std"], 3) for k in lpips],
            "" if r["p_ssim"] is None else f"{r['p_ssim']:.3g}",
        ]
        if vs_lr:
            cells += ["" if r.get(k) is None else f"{r[k]:.2g}" for k in ("p_ssim_lr", "p_psnr_lr")]
        print("| " + " | ".join(c if c != "None" else "" for c in cells) + " |")


if __name__ == "__main__":
    main()
