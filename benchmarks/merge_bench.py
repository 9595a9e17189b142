"""Merge `mrsisr bench` runs on the same maps into one result, with p-values re-paired across runs.

Long benches are run one model at a time (each a separate `mrsisr bench ... --limit N` with the
same seed, data and fold, hence the same maps). Each `results.json` keeps its per-map scores, so
the merged file can pair any two rows: p-values against the reference model (the first) and
against the LR input are recomputed with the paired two-sided Wilcoxon test on the maps both
rows scored (a 1000-NFE model's first maps).

Two runs of the same recipe (e.g. the same model with two sets of weights) are told apart by a
label: `RUN/results.json:LABEL` renames that run's model rows to LABEL (the LR input keeps its
name).

Usage:
    python benchmarks/merge_bench.py RUN1/results.json RUN2/results.json ... \
        --out benchmarks/results/bench-small-100maps.json
    python benchmarks/merge_bench.py A/results.json:ftddm-eps B/results.json:ftddm-x0 --out F
    python benchmarks/merge_bench.py benchmarks/results/bench-small-100maps.json NEW/results.json \
        --replace --out benchmarks/results/bench-small-100maps.json

A merged file can be an input again, and a run that lists the same maps in another order is
put in the merged order. Where two runs score the same model at the same scale, the
first one's row is kept, or with `--replace` the last one's (e.g. a model re-benched with new
weights).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def relabel(run: dict, label: str) -> dict:
    """Rename a bench run's model rows (and their per-map scores) to `label`.

    Args:
        run: A bench `results.json`, parsed.
        label: The new model name; `lr_input` rows keep theirs.

    Returns:
        The run with renamed rows.
    """
    renamed = {}
    for row in run["rows"]:
        if row["model"] != "lr_input":
            renamed[f"{row['model']}@{row['scale']}"] = f"{label}@{row['scale']}"
            row["model"] = label
    run["scores"] = {renamed.get(k, k): v for k, v in run.get("scores", {}).items()}
    return run


def align(run: dict, maps: list) -> dict:
    """Put a run's per-map scores in the order of `maps`, in place.

    Runs of different versions may list the same maps in another order; each score list covers
    the first maps of its run (all of them, or a 1000-NFE model's first few).

    Args:
        run: A bench `results.json`, parsed.
        maps: The merged result's maps.

    Returns:
        The run, its `maps` and score lists in the order of `maps`.

    Raises:
        ValueError: The first maps of a score list are not the first maps of `maps`.
    """
    if run["maps"] == maps[: len(run["maps"])]:
        return run
    where = {tuple(m): i for i, m in enumerate(run["maps"])}
    if sorted(where) != sorted(tuple(m) for m in maps[: len(where)]):
        raise ValueError("other maps")
    for entry in run.get("scores", {}).values():
        for metric, values in entry.items():
            order = [where.get(tuple(m), -1) for m in maps[: len(values)]]
            if sorted(order) != list(range(len(values))):  # not the run's first maps
                raise ValueError("other maps")
            entry[metric] = [values[i] for i in order]
    run["maps"] = maps[: len(run["maps"])]
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="results.json files; the first model is the reference")
    ap.add_argument("--out", required=True)
    ap.add_argument("--order", default="", help="comma-separated models: the table's row order")
    ap.add_argument(
        "--replace", action="store_true", help="a later run's row replaces an earlier one's"
    )
    args = ap.parse_args()
    from mrsisr.metrics import wilcoxon

    runs, paths = [], []
    for spec in args.runs:
        path, label = spec, ""
        if not Path(spec).is_file() and ":" in spec:
            path, _, label = spec.rpartition(":")
        if not Path(path).is_file():
            print(f"{spec}: no such file; pass RUN/results.json[:LABEL]", file=sys.stderr)
            sys.exit(2)
        try:
            run = json.loads(Path(path).read_text())
            run["maps"], run["rows"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            print(
                f"{spec}: not a bench results.json ({err}); pass RUN/results.json", file=sys.stderr
            )
            sys.exit(2)
        runs.append(relabel(run, label) if label else run)
        paths.append(path)
    args.runs = paths
    maps = max((r["maps"] for r in runs), key=len)
    for path, r in zip(args.runs, runs, strict=True):
        try:
            align(r, maps)
        except ValueError:
            print(
                f"{path}: scored other maps; use the same --limit, seed and data", file=sys.stderr
            )
            sys.exit(2)
    merged: dict[tuple, dict] = {}
    scores = {}
    for r in runs:
        for row in r["rows"]:
            key, name = (row["model"], row["scale"]), f"{row['model']}@{row['scale']}"
            if key in merged and not (args.replace and row["model"] != "lr_input"):
                continue
            merged[key] = dict(row)
            scores.pop(name, None)
            if name in r.get("scores", {}):
                scores[name] = r["scores"][name]
    rows = list(merged.values())
    ref = next(r["model"] for r in rows if r["model"] != "lr_input")
    models = list(dict.fromkeys(r["model"] for r in rows if r["model"] != "lr_input"))
    wanted = [m for m in args.order.split(",") if m]
    models = [m for m in wanted if m in models] + [m for m in models if m not in wanted]
    order = {m: i for i, m in enumerate([*models, "lr_input"])}
    rows.sort(key=lambda r: (-r["scale"], order[r["model"]]))

    sources = []
    for path, r in zip(args.runs, runs, strict=True):
        sources += r["config"].get("merged_from") or [str(Path(path).parent.name)]

    def p(a: str, b: str, metric: str) -> float | None:
        if a not in scores or b not in scores:
            return None
        x, y = np.asarray(scores[a][metric], float), np.asarray(scores[b][metric], float)
        n = min(len(x), len(y))
        return None if a == b else wilcoxon(x[:n], y[:n])

    for row in rows:
        me, s = f"{row['model']}@{row['scale']}", row["scale"]
        row["paired"] = me in scores
        for metric in ("nrmse", "psnr", "ssim"):
            row[f"p_{metric}"] = p(me, f"{ref}@{s}", metric)
        if me not in scores:  # an unpaired run: keep its own p against the LR input
            continue
        for metric in ("psnr", "ssim"):
            row[f"p_{metric}_lr"] = p(me, f"lr_input@{s}", metric)
    out = {
        "rows": rows,
        "config": {"merged_from": sources, "reference": ref}
        | {k: runs[0]["config"].get(k) for k in ("size", "data", "fold", "seed", "limit")},
        "machine": runs[0]["machine"],
        "maps": maps,
        "scores": scores,
    }
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}: {len(rows)} rows, reference {ref}")


if __name__ == "__main__":
    main()
