#!/usr/bin/env bash
# The accuracy waterfall of the shipped model (README "Where the accuracy goes"): joints, IMU, point clouds
# with ground-truth segmentation, live, on the same held-out windows. Resumable: finished parts are skipped.
# Training store: the default model's own (bundle v2: seed 200, 60 min, edition 2, mixed LiDARs; its training
# split trains the joint classifier). Held-out scenes: seeds 901-908 (1 min, 2 people, first-edition
# activities), on a 64-beam and on a 16-beam LiDAR. Time on this machine: ~1 min per scene.
# v1's figures (README) came from the same command with v1's bundle and store (git show 528f7fc:bench/waterfall.sh).
# Usage: bash bench/waterfall.sh [RUNS_DIR]   (default: runs/)
set -euo pipefail
D=${1:-runs}
B=.venv/bin/despite
mkdir -p "$D"
[ -f "$D/synth60e2/meta.json" ] || $B synth --out "$D/synth60e2" --minutes 60 --people 2 --seed 200 --edition 2 \
    --lidar-mix --quiet
for K in "64 beams" "16 beams"; do
  O="$D/waterfall_v2/${K// /_}"
  [ -f "$O/waterfall.json" ] || $B eval waterfall --model models/default --train-store "$D/synth60e2" \
      --seeds 901-908 --seconds 60 --kind "$K" --out "$O"
done
