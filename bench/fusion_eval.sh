#!/usr/bin/env bash
# Temporal fusion on held-out scenes (README, "Temporal fusion and events").
# Development scenes (seeds 301-304; the fusion settings were chosen on these) and held-out test
# scenes (seeds 401-412, never looked at while choosing): 60 s, 2 people, 64 beams, the default
# model; ground-truth segmentation and live perception.
# Usage: bash bench/fusion_eval.sh [OUT_DIR]    (default runs/fusion; bags ~0.6 GB each; ~35 min on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/fusion}"
mkdir -p "$OUT/bags"
for s in 301 302 303 304 401 402 403 404 405 406 407 408 409 410 411 412; do
  [ -f "$OUT/bags/s$s/metadata.yaml" ] || .venv/bin/despite synth --bag "$OUT/bags/s$s" --minutes 1 --seed $s --quiet >/dev/null
done
PY=".venv/bin/python bench/fusion_sweep.py"
DEV=$(ls -d "$OUT"/bags/s30[1-4]); TEST=$(ls -d "$OUT"/bags/s4[0-1][0-9])
$PY $DEV --segmentation ground-truth --out "$OUT/dev_gt.json" > "$OUT/dev_gt.md"
$PY $DEV --segmentation live --out "$OUT/dev_live.json" > "$OUT/dev_live.md"
$PY $TEST --segmentation ground-truth --only 0.3,0.8 --out "$OUT/test_gt.json" > "$OUT/test_gt.md"
$PY $TEST --segmentation live --only 0.3,0.8 --out "$OUT/test_live.json" > "$OUT/test_live.md"
for f in "$OUT"/dev_gt.md "$OUT"/dev_live.md "$OUT"/test_gt.md "$OUT"/test_live.md; do echo "## $(basename "$f" .md)"; cat "$f"; echo; done
