#!/usr/bin/env bash
# Reproduce models/default/ (preset DeSPITE) and models/despie/ (DeSPIE, for comparison) from nothing
# on a 2-core CPU. Steps whose outputs exist are skipped, so a second run only re-exports and re-evaluates.
# Time on this machine: data 1.5 min; per preset: pre-training 23 min (8 epochs), two heads on the frozen
# encoders ~10 min, matching evaluation ~3 min, export 0.5 min.
# Usage: bash bench/default_model.sh [RUNS_DIR]   (default: runs/)
set -euo pipefail
D=${1:-runs}
B=.venv/bin/despite
mkdir -p "$D"
# 1. Data: 20 minutes, 2 people per scene, 64-beam LiDAR, split by subject (the DeSPITE-core table's store).
[ -f "$D/synth20/meta.json" ] || $B synth --out "$D/synth20" --minutes 20 --people 2 --seed 100 --lidar-beams 64 --quiet
for P in DeSPITE DeSPIE; do
  R="$D/${P,,}_full"
  OUT=models/default; [ $P = DeSPIE ] && OUT=models/despie
  # 2. Pre-training: full-size encoders, 8 epochs over windows at stride 3, batch 128.
  [ -f "$R/last.pt" ] || $B train pretrain --store "$D/synth20" --out "$R" --preset $P \
      --epochs 8 --batch-size 128 --stride 3 --checkpoint-every 2 --threads 2 --quiet
  # 3. HAR heads (the reference's small MLP) on the FROZEN encoders: one encoder serves both the embedding and the head.
  for M in pointcloud imu; do
    [ -f "$R/head_$M/har.pt" ] || $B train har --store "$D/synth20" --out "$R/head_$M" --init "$R/last.pt" \
        --modality $M --freeze --head mlp --epochs 12 --batch-size 64 --lr 0.03 --stride 3 --eval-stride 2 \
        --threads 2 --quiet
  done
  # 4. Matching figures (reference protocol) for model.yaml.
  [ -f "$R/eval/matching.json" ] || $B eval matching --checkpoint "$R/last.pt" --store "$D/synth20" --out "$R/eval" --quiet
  # 5. Export (streaming parts included; text queries for the preset with text).
  Q=(); [ $P = DeSPITE ] && Q=(--text-queries-file config/text_queries.txt)
  rm -rf "$OUT"
  $B export --checkpoint "$R/last.pt" --store "$D/synth20" --out "$OUT" --model-id "${P,,}-synth-v1" \
      --har "$R/head_pointcloud/har.pt" "$R/head_imu/har.pt" --streaming "${Q[@]}" --matching "$R/eval/matching.json"
  # 6. The same test windows through the exported bundle (ONNX Runtime), recorded in model.yaml.
  for M in pointcloud imu; do
    $B eval har --model "$OUT" --store "$D/synth20" --modality $M --stride 2 --out "$D/${P,,}_bundle_eval/head_$M" \
        --write-metrics --quiet
  done
  # 7. Open vocabulary: zero-shot accuracy of the text queries vs the trained head, same windows.
  [ $P = DeSPITE ] && $B eval har --model "$OUT" --store "$D/synth20" --modality pointcloud --zero-shot --stride 2 \
      --out "$D/${P,,}_bundle_eval/zero_shot" --write-metrics --quiet
done
echo "bundles written: models/default models/despie"
