"""Read a running (or interrupted) study's kept rows: means and paired p-values so far.

A full study runs for hours; `mrsisr study` keeps each row's per-map scores in
`OUT/.NAME.partial.json` as soon as it is measured. This script reads that file without
disturbing the run and prints one line per kept row: the number of maps, the mean of each
metric, the sampling time per map, and the paired two-sided Wilcoxon p against the row it is
compared with: a `+dc` / `+dcp` row against its own model (the consistency study), any other
row against the first row kept at its scale. Interim numbers only: the study's JSON, table and
figure come when it finishes.

Usage:
    python benchmarks/partial_report.py benchmarks/studies-partial/.consistency.partial.json
    python benchmarks/partial_report.py FILE --metrics ssim,psnr,lpips_vgg
    python benchmarks/partial_report.py FILE --markdown   # a table to paste into the docs
"""

from __future__ import annotations

import argparse
import json
import re
import sys

import numpy as np
from scipy.stats import wilcoxon


def reference(name: str, scale: int, firsts: dict[int, str]) -> str:
    """The row `name` is compared with: its own model for `+dc`-style rows, else the first."""
    base = re.sub(r"\+dcp?$", "", name)
    return base if base != name else firsts[scale]


def report(path: str, metrics: list[str]) -> list[str]:
    """The lines to print for the kept rows of one partial file."""
    with open(path) as f:
        entries = json.load(f)["entries"]
    rows = []
    for key, entry in entries.items():
        name, scale, n = key.rsplit("|", 2)
        rows.append((name, int(scale.lstrip("x")), int(n), entry))
    firsts: dict[int, str] = {}
    for name, scale, _, _ in rows:
        firsts.setdefault(scale, name)
    by = {(name, scale): entry for name, scale, _, entry in rows}
    head = ["row", "scale", "maps", "s/map"] + metrics + [f"p_{m}" for m in metrics]
    lines = ["\t".join(head)]
    for name, scale, n, entry in rows:
        vals = entry["values"]
        cells = [name, f"x{scale}", str(n), f"{entry['seconds'] / max(n, 1):.1f}"]
        cells += [f"{np.mean(vals[m]):.4f}" if m in vals else "" for m in metrics]
        ref = by.get((reference(name, scale, firsts), scale))
        for m in metrics:
            a, b = np.asarray(vals.get(m, [])), np.asarray((ref or {}).get("values", {}).get(m, []))
            k = min(len(a), len(b))
            same = ref is entry or k == 0 or np.all(a[:k] == b[:k])
            cells.append("" if same else f"{wilcoxon(a[:k], b[:k]).pvalue:.2g}")
        lines.append("\t".join(cells))
    return lines


def markdown(lines: list[str]) -> list[str]:
    """The tab-separated `report` lines as a Markdown table (header, rule, rows)."""
    cells = [line.split("\t") for line in lines]
    rule = ["---"] * len(cells[0])
    return ["| " + " | ".join(row) + " |" for row in [cells[0], rule, *cells[1:]]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("partial", help="OUT/.NAME.partial.json of a study")
    ap.add_argument("--metrics", default="ssim,psnr,lpips_vgg", help="comma-separated")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = ap.parse_args()
    try:
        with open(args.partial) as f:
            json.load(f)
    except (OSError, ValueError) as err:
        print(
            f"{args.partial}: {err} (the file appears when the first row is kept)", file=sys.stderr
        )
        raise SystemExit(2) from None
    lines = report(args.partial, [m for m in args.metrics.split(",") if m])
    print("\n".join(markdown(lines) if args.markdown else lines))


if __name__ == "__main__":
    main()
