"""The paper's findings, side by side with what the studies measured on the phantom.

Each finding of the FTDDM paper (Tables 2-4, Figs. 5-7) is written below as a comparison between
two rows of one study at one upscaling factor, with the paper's own numbers where it prints them.
The script reads the study results (`benchmarks/results/study-small-NAME.json`), pairs the two
rows on the maps they share (the per-map scores the studies save) and runs a two-sided Wilcoxon
signed-rank test. A finding **agrees** when the phantom shows the paper's direction with p < 0.05,
**disagrees** when it shows the opposite direction with p < 0.05, and is **not significant**
otherwise (the direction is the one the signed-rank test saw: the larger rank sum). A "≈" finding
(the paper reports no real difference) is marked "agrees (no significant difference)" when
p ≥ 0.05, which with few maps (the 1000-NFE rows have 20) says little. A finding whose row a
study did not make (e.g. `tdpm-20` while TDPM's T_trunc = 20 generator is not shipped: that row
is then `tdpm-respaced-20`, another model) is "not measured". Nothing is judged by hand, so the
table can be regenerated whenever the studies are re-run. A study run on fewer maps per scale
than `--min-maps` (default 50, issue 16's size; e.g. an old 4-map run) is not judged: its
findings read "not measured at full size".

Usage:
    python benchmarks/findings.py [--results benchmarks/results] [--size small] [--json OUT]
        [--min-maps 50]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

LOWER_IS_BETTER = {"nrmse", "lpips_vgg", "lpips_alex"}
ALPHA = 0.05


@dataclass(frozen=True)
class Finding:
    """One claim of the paper: row `a` is better than (`>`) or as good as (`≈`) row `b`."""

    study: str
    source: str
    text: str
    scale: int
    metric: str
    a: str
    b: str
    relation: str = ">"
    paper_a: float | None = None
    paper_b: float | None = None


FINDINGS = [
    # Table 2 (s = 4): flow only < diffusion only < both
    Finding("ablation", "Table 2", "diffusion only beats flow only", 4, "ssim",
            "diffusion_only", "flow_only", ">", 0.929, 0.910),
    Finding("ablation", "Table 2", "flow + diffusion (FTDDM) beats diffusion only", 4, "ssim",
            "ftddm", "diffusion_only", ">", 0.932, 0.929),
    # Table 3 (s = 8): every ingredient helps, the mask most
    Finding("ablation", "Table 3", "the mask helps (UNet and flow)", 8, "ssim",
            "ftddm", "no_mask", ">", 0.888, 0.866),
    Finding("ablation", "Table 3", "T1 and FLAIR help a little (UNet and flow)", 8, "ssim",
            "ftddm", "no_mri", ">", 0.888, 0.885),
    Finding("ablation", "Table 3", "the guide loss helps a little", 8, "ssim",
            "ftddm", "no_guide", ">", 0.888, 0.884),
    Finding("ablation", "Table 3", "removing the mask hurts more than removing the MRIs", 8,
            "ssim", "no_mri", "no_mask", ">", 0.885, 0.866),
    # Fig. 5 (quality against NFE; no numbers printed)
    Finding("truncation", "Fig. 5", "respacing degrades with fewer steps (100 vs 20)", 4, "ssim",
            "respace-100", "respace-20"),
    Finding("truncation", "Fig. 5", "TDPM beats DPM-Solver++ at 50 steps", 4, "ssim",
            "tdpm-50", "dpm_solver_pp-50"),
    Finding("truncation", "Fig. 5", "FTDDM beats TDPM at 100 steps", 4, "ssim",
            "ftddm-100", "tdpm-100"),
    Finding("truncation", "Fig. 5", "FTDDM beats TDPM at 50 steps", 4, "ssim",
            "ftddm-50", "tdpm-50"),
    Finding("truncation", "Fig. 5", "FTDDM beats TDPM at 20 steps", 4, "ssim",
            "ftddm-20", "tdpm-20"),
    Finding("truncation", "Fig. 5", "FTDDM at T_trunc = 50 matches DDPM-1000", 4, "ssim",
            "ftddm-50", "ddpm-1000", "≈"),
    Finding("truncation", "Fig. 5", "FTDDM at T_trunc = 100 beats DDPM-1000", 4, "ssim",
            "ftddm-100", "ddpm-1000"),
    # Table 4 (s = 4): DPM-Solver++ inside FTDDM costs little; a larger T_trunc is better
    Finding("solver", "Table 4", "T_trunc 100: the full chain beats DPM-Solver++ 10", 4, "ssim",
            "ftddm-ancestral-100", "ftddm-dpm_solver_pp-10", ">", 0.932, 0.927),
    Finding("solver", "Table 4", "T_trunc 100 beats 50 (full chains)", 4, "ssim",
            "ftddm-ancestral-100", "ftddm-t50-ancestral-50", ">", 0.932, 0.929),
    Finding("solver", "Table 4", "T_trunc 50 beats 20 (full chains)", 4, "ssim",
            "ftddm-t50-ancestral-50", "ftddm-t20-ancestral-20", ">", 0.929, 0.919),
    Finding("solver", "Table 4", "with DPM-Solver++ 10, T_trunc 100 beats 20", 4, "ssim",
            "ftddm-dpm_solver_pp-10", "ftddm-t20-dpm_solver_pp-10", ">", 0.927, 0.912),
    # Fig. 6: the conditioned factor should be the actual one
    Finding("scale", "Fig. 6", "told x8 beats told x4 when the map is x8", 8, "ssim",
            "ftddm-s8.00", "ftddm-s4.00"),
    Finding("scale", "Fig. 6", "told x4 beats told x8 when the map is x4", 4, "ssim",
            "ftddm-s4.00", "ftddm-s8.00"),
    Finding("scale", "Fig. 6", "told x2 beats told x4 when the map is x2", 2, "ssim",
            "ftddm-s2.00", "ftddm-s4.00"),
    # Fig. 7: tau_d trades fidelity for sharpness
    Finding("sharpness", "Fig. 7", "lower tau_d gives higher SSIM (0 vs 1)", 4, "ssim",
            "ftddm-tau_d0", "ftddm-tau_d1"),
    Finding("sharpness", "Fig. 7", "higher tau_d gives lower LPIPS (1 vs 0)", 4, "lpips_vgg",
            "ftddm-tau_d1", "ftddm-tau_d0"),
]  # fmt: skip
"""The paper's findings as row comparisons; the paper's numbers are SSIM from Tables 2-4."""


def paired(data: dict, a: str, b: str, scale: int, metric: str) -> tuple | None:
    """The two rows' scores on the maps they share, or `None` when a row or its scores are missing."""
    scores = data.get("scores") or {}
    sa, sb = scores.get(f"{a}@{scale}"), scores.get(f"{b}@{scale}")
    if sa is None or sb is None or metric not in sa or metric not in sb:
        return None
    index = {tuple(m): i for i, m in enumerate(sb["maps"])}
    pairs = [
        (va, sb[metric][index[tuple(m)]])
        for m, va in zip(sa["maps"], sa[metric])
        if tuple(m) in index and va is not None and sb[metric][index[tuple(m)]] is not None
    ]
    if not pairs:
        return None
    x, y = np.array(pairs, dtype=float).T
    return x, y


def study_maps(data: dict) -> int | None:
    """Maps per scale a study scored.

    Args:
        data: A study's results (`rows` with `n_maps`, `config`).

    Returns:
        The most maps any row scored (the LR input's row scores every chosen map), or, for a
        file without rows, its `--limit` (`None` when unknown or all maps).
    """
    counts = [int(r["n_maps"]) for r in data.get("rows") or [] if r.get("n_maps")]
    if counts:
        return max(counts)
    limit = (data.get("config") or {}).get("limit")
    return None if not limit else int(limit)


def judge(f: Finding, data: dict | None, min_maps: int = 0) -> dict:
    """Evaluate one finding on a study's results (a study with fewer than `min_maps` maps per
    scale is not judged)."""
    from scipy.stats import rankdata, wilcoxon

    out = asdict(f) | {"mean_a": None, "mean_b": None, "n": 0, "p": None}
    if data is None:
        return out | {"verdict": "not measured (no results file)"}
    maps = study_maps(data)
    if maps is not None and maps < min_maps:
        return out | {"verdict": f"not measured at full size (the study ran {maps} maps per scale)"}
    got = paired(data, f.a, f.b, f.scale, f.metric)
    if got is None:
        return out | {"verdict": "not measured (row or per-map scores missing)"}
    x, y = got
    diff = (x - y) * (-1 if f.metric in LOWER_IS_BETTER else 1)  # > 0: a is better
    p = float(wilcoxon(x, y).pvalue) if np.any(diff != 0) else 1.0
    # the direction the test itself saw: the larger signed-rank sum
    nonzero = diff[diff != 0]
    ranks = rankdata(np.abs(nonzero))
    better = float(ranks[nonzero > 0].sum() - ranks[nonzero < 0].sum())
    out |= {"mean_a": float(np.mean(x)), "mean_b": float(np.mean(y)), "n": len(x), "p": p}
    if f.relation == "≈":
        verdict = "agrees (no significant difference)" if p >= ALPHA else "disagrees"
    elif p >= ALPHA:
        verdict = "not significant"
    else:
        verdict = "agrees" if better > 0 else "disagrees"
    return out | {"verdict": verdict}


def table(results: list[dict]) -> str:
    """The Markdown table of the judged findings."""
    lines = [
        "| source | finding | scale | metric | paper | phantom | maps | p | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        paper = (
            f"{r['paper_a']:.3f} vs {r['paper_b']:.3f}" if r["paper_a"] is not None else "(figure)"
        )
        phantom = f"{r['mean_a']:.3f} vs {r['mean_b']:.3f}" if r["mean_a"] is not None else ""
        p = "" if r["p"] is None else (f"{r['p']:.1e}" if r["p"] < 1e-3 else f"{r['p']:.3f}")
        lines.append(
            f"| {r['source']} | {r['text']} (`{r['a']}` {r['relation']} `{r['b']}`) | "
            f"×{r['scale']} | {r['metric'].upper()} | {paper} | {phantom} | {r['n'] or ''} | "
            f"{p} | **{r['verdict']}** |"
        )
    return "\n".join(lines)


STUDIES = ("truncation", "solver", "scale", "sharpness", "ablation", "consistency")


def times(results_dir: Path, size: str, min_maps: int = 0) -> str:
    """Markdown table of each study's sampling time: the sum over its rows of seconds per map
    times maps, as each row was measured (rows read back after an interruption keep the time of
    the run that sampled them), so the figure does not depend on how often a study was resumed.
    Studies run on fewer than `min_maps` maps per scale are left out.
    """
    lines = [
        "| study | rows | maps per scale | 1000-NFE rows | sampling time |",
        "|---|---|---|---|---|",
    ]
    for name in STUDIES:
        path = results_dir / f"study-{size}-{name}.json"
        if not path.is_file():
            continue
        data = json.loads(path.read_text())
        maps = study_maps(data)
        if maps is not None and maps < min_maps:
            continue
        rows = [r for r in data["rows"] if r.get("nfe")]
        seconds = sum(float(r["sec_per_slice"]) * int(r["n_maps"]) for r in rows)
        fast = max((r["n_maps"] for r in rows if r["nfe"] < 500), default=0)
        slow = max((r["n_maps"] for r in rows if r["nfe"] >= 500), default=0)
        lines.append(f"| {name} | {len(rows)} | {fast} | {slow or '-'} | {seconds / 3600:.1f} h |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default="benchmarks/results")
    ap.add_argument("--size", default="small")
    ap.add_argument("--json", default=None, help="also write the judged findings here")
    ap.add_argument(
        "--min-maps", type=int, default=50, help="judge only studies run on this many maps"
    )
    args = ap.parse_args()
    cache: dict[str, dict | None] = {}
    results = []
    for f in FINDINGS:
        if f.study not in cache:
            path = Path(args.results) / f"study-{args.size}-{f.study}.json"
            cache[f.study] = json.loads(path.read_text()) if path.is_file() else None
        results.append(judge(f, cache[f.study], args.min_maps))
    print(table(results))
    print()
    print(times(Path(args.results), args.size, args.min_maps))
    if args.json:
        Path(args.json).write_text(json.dumps({"findings": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
