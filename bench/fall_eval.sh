#!/usr/bin/env bash
# Fall alerts and temporal fusion with the default model on second-edition scenes (README "Falls").
# Default scenes: seeds 501-506, the held-out test set (never used in training or tuning), 1 min, 2 people,
# 64 beams, edition 2 (fall, lying, get up among the activities). Development scenes (where the alert's
# body-down check was chosen): SEEDS="511 512 513 514 515 516"; long normal activity (false alarms per hour):
# SEEDS=521 MINUTES=15 PEOPLE=4 (development), SEEDS=531 MINUTES=15 PEOPLE=4 (test).
# Each scene is scored with ground-truth and live segmentation, the shipped fusion (switch rate 0.3 /s,
# sharpness 0.8) and alert (fall then lying with the body-down check), and, for comparison (the last row),
# the alert on the labels alone (alert_min_drop_m 0: the rule before the check). Resumable (bags are kept).
# ~1 min per scene-minute and person pair on 2 cores; bags ~0.6 GB per minute and 2 people.
# Usage: [SEEDS="..."] [MINUTES=1] [PEOPLE=2] bash bench/fall_eval.sh [OUT_DIR]    (default runs/falls)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/falls}"
SEEDS="${SEEDS:-501 502 503 504 505 506}"
MINUTES="${MINUTES:-1}"
PEOPLE="${PEOPLE:-2}"
mkdir -p "$OUT/bags"
BAGS=()
for s in $SEEDS; do
  [ -f "$OUT/bags/s$s/metadata.yaml" ] || .venv/bin/despite synth --bag "$OUT/bags/s$s" --minutes "$MINUTES" \
      --people "$PEOPLE" --seed "$s" --edition 2 --quiet >/dev/null
  BAGS+=("$OUT/bags/s$s")
done
for SEG in ground-truth live; do
  .venv/bin/python bench/fusion_sweep.py "${BAGS[@]}" --segmentation $SEG --only 0.3,0.8 \
      --alert-sequence fall,lying --labels-only-alert --out "$OUT/$SEG.json" > "$OUT/$SEG.md"
  echo "## $SEG"; cat "$OUT/$SEG.md"; echo
done
