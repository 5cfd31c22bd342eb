#!/usr/bin/env bash
# Reproduce the README's DeSPITE-core table on a 2-core CPU (about 2 hours in all).
# Usage: bash bench/core_experiments.sh [RUNS_DIR]   (default: runs/)
set -euo pipefail
D=${1:-runs}
B=.venv/bin/despite
mkdir -p "$D"
# 1. Data: 20 minutes, 2 people per scene, 64-beam LiDAR; 20 scenes, split by subject (28 train / 4 val / 8 test sequences).
[ -f "$D/synth20/meta.json" ] || $B synth --out "$D/synth20" --minutes 20 --people 2 --seed 100 --lidar-beams 64 --quiet
# 2. Pre-training, full reference-size encoders, 8 epochs over windows at stride 3 (about 5.4k windows/epoch), batch 128.
for P in DeSPITE DeSPIE; do
  [ -f "$D/${P,,}_full/last.pt" ] || $B train pretrain --store "$D/synth20" --out "$D/${P,,}_full" --preset $P \
      --epochs 8 --batch-size 128 --stride 3 --checkpoint-every 2 --threads 2 --quiet
  $B eval matching --checkpoint "$D/${P,,}_full/last.pt" --store "$D/synth20" --out "$D/${P,,}_full/eval" --quiet
  $B eval retrieval --checkpoint "$D/${P,,}_full/last.pt" --store "$D/synth20" --out "$D/${P,,}_full/eval" --quiet
done
# 3. HAR with 10 % of the training labels: from scratch, and fine-tuned from each pre-training.
HAR="--store $D/synth20 --modality pointcloud --label-fraction 0.1 --epochs 12 --batch-size 24 --eval-stride 2 --threads 2 --quiet"
$B train har $HAR --out "$D/har_scratch"
$B train har $HAR --out "$D/har_despie" --init "$D/despie_full/last.pt"
$B train har $HAR --out "$D/har_despite" --init "$D/despite_full/last.pt"
