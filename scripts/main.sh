#!/usr/bin/env bash
# The main job end to end on one real category: inspect the data, generate defect pairs with the
# default method, look at them, then benchmark what they do for an inspection model against the
# PatchCore baseline, and write the HTML report.
#   bash scripts/main.sh [DATA_DIR] [OUT_DIR] [PROFILE]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
DATA=${1:-../shared/datasets/mvtec_ad/bottle}
OUT=${2:-runs/main}
PROFILE=${3:-cpu}
AF=.venv/bin/anomalyforge
$AF info "$DATA"
$AF generate --data "$DATA" --method croppaste --n 500 --seed 0 --size 256 --out "$OUT/generated/croppaste"
$AF preview "$OUT/generated/croppaste" --out "$OUT/generated/croppaste/preview.png"
$AF benchmark --data "$DATA" --methods croppaste,patchcore --profile "$PROFILE" --seed 0 \
  --run croppaste="$OUT/generated/croppaste" --out "$OUT/benchmark"
echo "report: $OUT/benchmark/report.html"
