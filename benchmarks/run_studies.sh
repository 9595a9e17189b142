#!/usr/bin/env bash
# The paper's studies at full size, one after the other, in the background and resumable.
#
# Every study scores >= 50 maps per scale (the consistency study 100), 1000-NFE rows (DDPM-1000,
# diffusion_only) 20, as issue 16 asks. Each study keeps its per-map scores in
# OUT/.NAME.partial.json as they are measured, so after an interruption the same command
# carries on where it stopped; a study whose OUT/NAME.json exists is finished and skipped
# (FORCE=1 runs it again: only rows whose model's weights changed since are sampled, e.g. after
# retraining a TDPM GAN; the others are read back). When a study finishes, its JSON goes to
# benchmarks/results/study-small-NAME.json and its figure to docs/img/study_small_NAME.png,
# where `python benchmarks/md_table.py FILE --pivot ssim,psnr` turns it into the docs' table.
#
# On a CPU the networks run fastest on 16 maps per call with channels-last weights (BATCH=16,
# CHANNELS_LAST=1, the defaults here and of `mrsisr study` on a CPU; about 1.3x faster than
# all 50 maps at once without channels-last: about 60 against 80-81 ms per map and network
# evaluation at x4 and x2, measured in the truncation and solver studies on the 2-core build
# machine). The draws depend on the batch, so it is part
# of each study's identity: keep it when resuming. On a GPU, BATCH=64.
#
# The partial scores live in benchmarks/studies-partial/ inside the work tree (OUT= elsewhere),
# because a study outlasts one working session and a new machine starts with an empty
# ~/.cache: commit `benchmarks/studies-partial/.NAME.partial.json` when you stop (a few hundred
# kB of per-map scores), and the next session's run carries on from there.
#
# Usage (from the repository root, with the environment active):
#   nohup benchmarks/run_studies.sh > ~/.cache/mrsisr/studies.log 2>&1 &
#   STUDIES="solver truncation" LIMIT=50 benchmarks/run_studies.sh   # a subset
#
# CPU cost, estimated from 47 ms per image and network evaluation (FTDDM's small UNet at batch
# 16 on the 2-core build machine): solver ~35 min, truncation ~2 h 10 min (47 min of it the
# DDPM-1000 reference), ablation ~2 h, sharpness ~1 h 10 min, scale ~1 h, consistency ~4 h.
set -euo pipefail

LIMIT=${LIMIT:-50}
SLOW=${SLOW:-20}
STUDIES=${STUDIES:-solver truncation ablation sharpness scale consistency}
BATCH=${BATCH:-16}
CHANNELS_LAST=${CHANNELS_LAST:-1}
EXTRA=()
if [ "$CHANNELS_LAST" = 1 ]; then EXTRA+=(--channels-last); fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/benchmarks/studies-partial}

for study in $STUDIES; do
  limit=$LIMIT
  if [ "$study" = consistency ] && [ "$LIMIT" -lt 100 ]; then limit=100; fi
  if [ -f "$OUT/$study.json" ] && [ "${FORCE:-0}" != 1 ]; then
    echo "== $study: finished earlier ($OUT/$study.json); FORCE=1 runs it again"
    continue
  fi
  echo "== $study: $limit maps per scale ($SLOW for 1000-NFE rows), $(date -u +%FT%TZ)"
  start=$(date +%s)
  nice -n 5 mrsisr study "$study" --size small --limit "$limit" --slow-limit "$SLOW" \
    --batch "$BATCH" "${EXTRA[@]}" --out "$OUT"
  echo "== $study done in $(( $(date +%s) - start )) s (this run; earlier runs not counted)"
  cp "$OUT/$study.json" "$ROOT/benchmarks/results/study-small-$study.json"
  cp "$OUT/$study.png" "$ROOT/docs/img/study_small_$study.png"
done
