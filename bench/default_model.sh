#!/usr/bin/env bash
# Reproduce models/default/ (preset DeSPITE) and models/despie/ from nothing on a 2-core CPU.
# Steps whose outputs exist are skipped, so a second run only re-exports.
# Time on this machine: data 1.5 min, pre-training 23 min (8 epochs), two frozen-encoder heads ~12 min, export 1 min.
# Usage: bash bench/default_model.sh [RUNS_DIR]   (default: runs/)
set -euo pipefail
D=${1:-runs}
B=.venv/bin/despite
mkdir -p "$D"
# 1. Data: 20 minutes, 2 people per scene, 64-beam LiDAR, split by subject (the DeSPITE-core table's store).
[ -f "$D/synth20/meta.json" ] || $B synth --out "$D/synth20" --minutes 20 --people 2 --seed 100 --lidar-beams 64 --quiet
for P in DeSPITE DeSPIE; do
  R="$D/${P,,}_full"
  # 2. Pre-training: full-size encoders, 8 epochs over windows at stride 3, batch 128.
  [ -f "$R/last.pt" ] || $B train pretrain --store "$D/synth20" --out "$R" --preset $P \
      --epochs 8 --batch-size 128 --stride 3 --checkpoint-every 2 --threads 2 --quiet
  # 3. HAR heads on the FROZEN encoders (one encoder then serves both the embedding and the head).
  for M in pointcloud imu; do
    [ -f "$R/head_$M/har.pt" ] || $B train har --store "$D/synth20" --out "$R/head_$M" --init "$R/last.pt" \
        --modality $M --freeze --head mlp --epochs 12 --batch-size 64 --lr 0.03 --stride 3 --eval-stride 2 \
        --threads 2 --quiet
  done
  # 4. Matching figures for model.yaml.
  [ -f "$R/eval/matching.json" ] || $B eval matching --checkpoint "$R/last.pt" --store "$D/synth20" --out "$R/eval" --quiet
done
# 5. Export the bundles (streaming parts included; text queries for the preset with text).
$B export --checkpoint "$D/despite_full/last.pt" --store "$D/synth20" --out models/default --model-id despite-synth-v1 \
    --har "$D/despite_full/head_pointcloud/har.pt" "$D/despite_full/head_imu/har.pt" --streaming \
    --text-queries-file config/text_queries.txt --matching "$D/despite_full/eval/matching.json"
$B export --checkpoint "$D/despie_full/last.pt" --store "$D/synth20" --out models/despie --model-id despie-synth-v1 \
    --har "$D/despie_full/head_pointcloud/har.pt" "$D/despie_full/head_imu/har.pt" --streaming \
    --matching "$D/despie_full/eval/matching.json"
# 6. Zero-shot (text queries) vs the trained head on the same test windows, through the bundle.
#    --write-metrics adds the figures to the bundle's model.yaml (metrics are not part of any hash).
for M in pointcloud imu; do
  $B eval har --model models/default --store "$D/synth20" --modality $M --out "$D/default_eval/head_$M" --write-metrics --quiet
done
$B eval har --model models/default --store "$D/synth20" --modality pointcloud --zero-shot --out "$D/default_eval/zero_shot" \
    --write-metrics --quiet
