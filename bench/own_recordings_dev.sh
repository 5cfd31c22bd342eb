#!/usr/bin/env bash
# Choose the fine-tuning recipe of bench/own_recordings.sh on DEVELOPMENT bags (seeds 5201-5202,
# same LiDAR), never on its held-out test bags (5101-5104): each candidate is fine-tuned on the 1-,
# 3- and 10-minute training stores and scored on the dev store. Run bench/own_recordings.sh first
# (it makes the training stores); steps whose outputs exist are skipped (resumable).
# Usage: [ONLY="recipe ..."] bash bench/own_recordings_dev.sh [RUNS_DIR] [MINUTES...]   (default: runs/own 1 3 10)
# Run as: bash bench/own_recordings_dev.sh runs/own 1 3, then
#         ONLY="seen-head0.01 seen-enc3e-05 seen-enc0.0003 all-sgd0.01" bash bench/own_recordings_dev.sh runs/own 10
set -euo pipefail
D=${1:-runs/own}; shift || true
SIZES=${*:-1 3 10}
B=.venv/bin
LIDAR=(--lidar-beams 16 --lidar-mount 0,2.6,20)
for s in 5201 5202; do
  [ -f "$D/bags/s$s/metadata.yaml" ] || $B/despite synth --bag "$D/bags/s$s" --minutes 1 --people 2 --seed $s "${LIDAR[@]}" --quiet
done
[ -f "$D/dev_store/meta.json" ] || $B/despite import rosbag "$D/bags/s5201" "$D/bags/s5202" --out "$D/dev_store" > "$D/dev_store.json"
# the shipped model's own figure on the dev store (the row to beat)
[ -f "$D/dev/shipped/har.json" ] || $B/despite eval har --model models/default --store "$D/dev_store" --split all \
    --stride 3 --out "$D/dev/shipped" --threads 2 --quiet > /dev/null
# name -> extra flags of despite train har (everything else as in own_recordings.sh)
# (all-*: the loss over every class; seen-*: over the classes with a training window, --loss-classes;
#  headX: encoder frozen; encX: encoder at --encoder-lr X, head at 0.01; sgdX: both at X)
declare -A CAND=([all-sgd0.01]="--lr 0.01 --loss-classes all"
                 [all-head0.01]="--lr 0.01 --freeze --loss-classes all"
                 [seen-head0.01]="--lr 0.01 --freeze --loss-classes seen"
                 [seen-enc0.0003]="--lr 0.01 --encoder-lr 0.0003 --loss-classes seen"
                 [seen-enc3e-05]="--lr 0.01 --encoder-lr 3e-05 --loss-classes seen"
                 [seen-enc1e-05]="--lr 0.01 --encoder-lr 1e-05 --loss-classes seen")
for n in $SIZES; do
  for c in ${ONLY:-${!CAND[@]}}; do
    R="$D/dev/$c/$n"
    # shellcheck disable=SC2086
    [ -f "$R/metrics.json" ] || $B/despite train har --store "$D/store$n" --test-store "$D/dev_store" --out "$R" \
        --init models/default --modality pointcloud --head mlp --epochs 6 --batch-size 32 ${CAND[$c]} --stride 3 \
        --eval-stride 3 --train-split all --test-split all --threads 2 --quiet
  done
done
$B/python - "$D" <<'PY'
import json, sys
from pathlib import Path
root = Path(sys.argv[1]) / "dev"
rows = {}
for f in sorted(root.glob("*/*/metrics.json")):
    t = json.loads(f.read_text())["test"]
    rows.setdefault(f.parent.parent.name, {})[int(f.parent.name)] = (t["accuracy"], t["macro_f1"])
sizes = sorted({n for r in rows.values() for n in r})
t = json.loads((root / "shipped" / "har.json").read_text())
rows["(shipped, not fine-tuned)"] = {n: (t["accuracy"], t["macro_f1"]) for n in sizes}
print("| recipe | " + " | ".join(f"{n} min: accuracy / macro-F1" for n in sizes) + " |")
print("|---|" + "---|" * len(sizes))
for c, r in sorted(rows.items()):
    print(f"| {c} | " + " | ".join(f"{r[n][0]:.3f} / {r[n][1]:.3f}" if n in r else "-" for n in sizes) + " |")
PY
