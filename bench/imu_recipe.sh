#!/usr/bin/env bash
# IMU-only HAR from scratch on held-out simulated subjects, all labels: the recipe's IMU input options measured
# side by side on the same store, split and schedule (README "IMU input: measured"). Resumable (finished runs
# are skipped). Store: the default model's training store (seed 100, 20 min; split by subject).
# Usage: bash bench/imu_recipe.sh [RUNS_DIR] [SEEDS]   (default: runs/, seeds "0 1")
set -euo pipefail
D=${1:-runs}
SEEDS=${2:-0 1}
B=.venv/bin/despite
[ -f "$D/synth20/meta.json" ] || $B synth --out "$D/synth20" --minutes 20 --people 2 --seed 100 --lidar-beams 64 --quiet
for S in $SEEDS; do
  for V in base norm gyro norm+gyro; do
    O="$D/imu_recipe/$V/seed$S"
    X=(); [[ $V == *norm* ]] && X+=(--imu-norm); [[ $V == *gyro* ]] && X+=(--imu-gyro)
    [ -f "$O/metrics.json" ] || $B train har --store "$D/synth20" --out "$O" --modality imu --epochs 12 \
        --batch-size 64 --lr 0.03 --stride 3 --eval-stride 2 --seed "$S" --threads 2 --quiet "${X[@]}"
  done
done
.venv/bin/python - "$D/imu_recipe" <<'PY'
import json, sys
from pathlib import Path
root = Path(sys.argv[1])
print("| IMU input | test accuracy (per seed) | macro F1 | minutes per run |\n|---|---|---|---|")
for v in ("base", "norm", "gyro", "norm+gyro"):
    ms = [json.loads(p.read_text()) for p in sorted((root / v).glob("seed*/metrics.json"))]
    if not ms:
        continue
    acc = [m["test"]["accuracy"] for m in ms]
    f1 = [m["test"]["macro_f1"] for m in ms]
    mins = [m["log"][-1]["seconds"] / 60 for m in ms]
    print(f"| {v} | {sum(acc)/len(acc):.3f} ({', '.join(f'{a:.3f}' for a in acc)}) | {sum(f1)/len(f1):.3f} | {sum(mins)/len(mins):.1f} |")
PY
