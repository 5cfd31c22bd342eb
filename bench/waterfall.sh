#!/usr/bin/env bash
# The accuracy waterfall of the shipped model (README "Where the accuracy goes"): joints, IMU, point clouds
# with ground-truth segmentation, live, on the same held-out windows. Resumable: finished parts are skipped.
# Training store: the default model's own (seed 100, 20 min, 64 beams; its training split trains the joint
# classifier). Held-out scenes: seeds 901-908 (1 min, 2 people), on a 64-beam and on a 16-beam LiDAR.
# Time on this machine: store 1.5 min; ~1 min per scene.
# Usage: bash bench/waterfall.sh [RUNS_DIR]   (default: runs/)
set -euo pipefail
D=${1:-runs}
B=.venv/bin/despite
mkdir -p "$D"
[ -f "$D/synth20/meta.json" ] || $B synth --out "$D/synth20" --minutes 20 --people 2 --seed 100 --lidar-beams 64 --quiet
for K in "64 beams" "16 beams"; do
  O="$D/waterfall/${K// /_}"
  [ -f "$O/waterfall.json" ] || $B eval waterfall --model models/default --train-store "$D/synth20" \
      --seeds 901-908 --seconds 60 --kind "$K" --out "$O"
done
