"""Choose a flow initializer's temperature τf on the validation maps (never the test maps).

A flow that draws `x_{t_start}` should leave, around `sqrt(γ) x0`, a residual whose spread is the
forward process's own `sqrt(1 - γ)`. An under-trained flow's latent is too wide, so its draws at
the paper's τf = 0.9 carry more noise than the denoiser was trained to remove. This script draws
`x_{t_start}` for the fold's **validation** maps at several τf and reports the residual's
standard deviation inside the mask against `sqrt(1 - γ)`; the τf whose spread is closest is the
calibrated one (interpolated linearly between grid points).

A flow trained for another truncation step (`zoo/weights/truncation/ftddm-t50-small`, or a run
given with `--weights`) is calibrated with `--t-trunc 50`; `--record` then writes the calibrated
value into that flow's card (`tau_f`), where the truncation and solver studies take it from.

Usage:
    python benchmarks/calibrate_tau.py ftddm --size small [--weights RUN] [--maps 64]
        [--t-trunc 50 [--record]] [--json benchmarks/results/calibrate-tau-ftddm-small.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipe")
    ap.add_argument("--size", default="small")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--maps", type=int, default=64, help="validation maps per scale")
    ap.add_argument("--taus", default="0.3,0.4,0.5,0.6,0.7,0.8,0.9")
    ap.add_argument("--json", default=None)
    ap.add_argument(
        "--t-trunc",
        type=int,
        default=None,
        help="calibrate the initializer trained for this truncation step (default: the recipe's)",
    )
    ap.add_argument(
        "--record",
        action="store_true",
        help="write the calibrated tau_f into the --t-trunc initializer's card",
    )
    args = ap.parse_args()
    if args.record and args.t_trunc is None:
        ap.error("--record needs --t-trunc (the recipe's own tau_f lives in its TOML)")
    import mrsisr
    from mrsisr.data import MRSIDataset, collate, fold_split, load_dataset
    from mrsisr.data.splits import resolve_data

    torch.set_grad_enabled(False)
    subjects = load_dataset(resolve_data("phantom"))
    _, val_ids, _ = fold_split([s.subject for s in subjects], args.fold)
    taus = [float(t) for t in args.taus.split(",")]
    source = None
    if args.t_trunc is None:
        pipe = mrsisr.load(args.recipe, size=args.size, weights=args.weights)
    else:
        from mrsisr.eval.studies import StudyConfig
        from mrsisr.eval.studies.truncation import t_trunc_pipeline, t_trunc_weights_path

        key = f"{args.recipe}-t{args.t_trunc}"
        cfg = StudyConfig(size=args.size, weights={key: args.weights} if args.weights else {})
        pipe = t_trunc_pipeline(cfg, args.recipe, args.t_trunc)
        if pipe is None:
            raise SystemExit(f"no {key} initializer: pass --weights RUN")
        source = Path(args.weights or t_trunc_weights_path(args.recipe, args.t_trunc, args.size))
    t_start, schedule = pipe.t_start, pipe.schedule
    g = float(schedule.gammas[t_start])
    ideal = (1.0 - g) ** 0.5
    spread = {t: [] for t in taus}
    for size in (8, 16, 32):
        data = MRSIDataset(subjects, lr_size=size, subject_ids=val_ids)
        idx = np.random.default_rng(0).permutation(len(data))[: args.maps]
        batch = collate([data[int(i)] for i in idx])
        inside = batch.cond.mask > 0
        for tau in taus:
            pipe.initializer.tau_f = tau
            x = pipe.initializer.sample(
                batch.cond, t_start, schedule, generator=torch.Generator().manual_seed(0)
            )
            spread[tau].append(float((x - g**0.5 * batch.x0)[inside].std()))
    rows = [{"tau_f": t, "residual_std": float(np.mean(spread[t]))} for t in taus]
    for r in rows:
        print(f"tau_f {r['tau_f']:.2f}: residual std {r['residual_std']:.4f} (target {ideal:.4f})")
    s = np.array([r["residual_std"] for r in rows])
    # the spread grows with tau: interpolate where it crosses the target
    best = (
        float(np.interp(ideal, s, taus))
        if s[0] <= ideal <= s[-1]
        else taus[int(np.argmin(abs(s - ideal)))]
    )
    print(
        f"calibrated tau_f = {best:.2f} ({args.recipe} {args.size}, fold {args.fold} validation maps)"
    )
    if args.json:
        out = {
            "recipe": args.recipe,
            "size": args.size,
            "weights": args.weights,
            "fold": args.fold,
            "t_start": t_start,
            "target_std": ideal,
            "rows": rows,
            "calibrated_tau_f": best,
        }
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    if args.record:
        card_file = source / "card.json" if source.is_dir() else source.with_suffix(".json")
        if not card_file.is_file():
            raise SystemExit(
                f"--record: {card_file} does not exist (the recipe's own tau_f lives in its TOML; "
                "a truncation initializer needs its card)"
            )
        card = json.loads(card_file.read_text())
        card["tau_f"] = round(best, 2)
        card["tau_f_note"] = (
            f"calibrated with benchmarks/calibrate_tau.py --t-trunc {args.t_trunc} on "
            f"{args.maps} fold-{args.fold} validation maps per scale (residual std of x_{t_start} "
            f"against sqrt(1 - gamma) = {ideal:.4f})"
        )
        card_file.write_text(json.dumps(card, indent=2) + "\n")
        print(f"recorded tau_f = {card['tau_f']} in {card_file}")


if __name__ == "__main__":
    main()
