#!/usr/bin/env bash
# Falls and temporal fusion with the default model on held-out second-edition scenes (README "Falls").
# Scenes: seeds 501-506 (never used in training or tuning), 1 min, 2 people, 64 beams, edition 2 (fall, lying,
# get up among the activities). Alert: a fused `fall` segment followed by `lying` (har_node's default
# alert_sequence); fusion at its shipped setting (switch rate 0.3 /s, sharpness 0.8). Ground-truth and
# live segmentation. Resumable (bags are kept). ~2.5 min per scene on 2 cores; bags ~0.6 GB each.
# Usage: bash bench/fall_eval.sh [OUT_DIR]    (default runs/falls)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/falls}"
mkdir -p "$OUT/bags"
for s in 501 502 503 504 505 506; do
  [ -f "$OUT/bags/s$s/metadata.yaml" ] || .venv/bin/despite synth --bag "$OUT/bags/s$s" --minutes 1 --seed $s \
      --edition 2 --quiet >/dev/null
done
for SEG in ground-truth live; do
  .venv/bin/python bench/fusion_sweep.py "$OUT"/bags/s50[1-6] --segmentation $SEG --only 0.3,0.8 \
      --alert-sequence fall,lying --out "$OUT/$SEG.json" > "$OUT/$SEG.md"
  echo "## $SEG"; cat "$OUT/$SEG.md"; echo
done
