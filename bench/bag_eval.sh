#!/usr/bin/env bash
# Reproduce the README's bag-eval table: the default model on held-out synthetic bags (a seed never
# used in training), live and ground-truth segmentation, in domain (64 beams) and out of domain
# (32 and 16 beams; shorter and taller bodies); offline throughput on the 2-minute 32-beam bag and
# replay latency at 1x. About 25 minutes on a 2-core CPU; bags need ~3 GB of disk.
# Usage: bash bench/bag_eval.sh [DIR]   (default: runs/bags)
set -euo pipefail
D=${1:-runs/bags}
B=.venv/bin
mkdir -p "$D"
declare -A SYNTH=(
  [b64]="--minutes 1 --lidar-beams 64"
  [b32]="--minutes 2 --lidar-beams 32"
  [b16]="--minutes 1 --lidar-beams 16"
  [short]="--minutes 1 --lidar-beams 64 --height-range 1.45,1.6"
  [tall]="--minutes 1 --lidar-beams 64 --height-range 1.9,2.05"
)
for K in b64 b32 b16 short tall; do
  [ -f "$D/$K/metadata.yaml" ] || $B/despite synth --bag "$D/$K" --people 2 --seed 777 ${SYNTH[$K]} --quiet
  for S in live ground-truth; do
    [ -f "$D/eval_${K}_$S/results.json" ] || $B/despite-ros bag-eval "$D/$K" --out "$D/eval_${K}_$S" --segmentation $S --quiet
  done
done
[ -f "$D/replay_b32/results.json" ] || $B/despite-ros bag-eval "$D/b32" --out "$D/replay_b32" --mode replay --quiet
$B/python bench/bag_eval_table.py "$D"
