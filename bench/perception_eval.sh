#!/usr/bin/env bash
# The perception scene matrix of the README (issue: perception that finds every person).
# Development seeds 1-2 (the scenes perception was tuned on) and held-out test seeds 101-103 (never
# looked at while tuning); background on (a static sensor) and off (a moving robot); and the
# perception this replaced (git revision cea979b) on the same test scenes.
# Usage: bash bench/perception_eval.sh [OUT_DIR]     (default runs/perception; ~25 min on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/perception}"
mkdir -p "$OUT"
D=".venv/bin/despite eval perception --seconds 30 --quiet"
$D --seeds 101-103 --out "$OUT/test_background.json" > "$OUT/test_background.md" &
$D --seeds 101-103 --no-background --out "$OUT/test_no_background.json" > "$OUT/test_no_background.md"
wait
$D --seeds 101-103 --baseline cea979b --out "$OUT/test_baseline.json" > "$OUT/test_baseline.md" &
$D --seeds 1-2 --out "$OUT/dev_background.json" > "$OUT/dev_background.md"
wait
for f in "$OUT"/*.md; do echo "## $(basename "$f" .md)"; grep '^|' "$f"; echo; done
