#!/usr/bin/env bash
# The main job end to end on one real category: inspect the data, generate defect pairs with the
# default method, look at them, then benchmark what they do for an inspection model against the
# PatchCore baseline, and write the HTML report; then predict a few test images with the very model the
# benchmark scored (saved by --save-models, not trained twice) and say where the masks are.
#   bash scripts/main.sh [DATA_DIR] [OUT_DIR] [PROFILE] [IMAGES (glob, default DATA_DIR/test/*/01[0-2].png)]
# The default images are files 010-012 of every test folder: in bottle's held-out test part (the few-shot
# training third is 000-006 there); give IMAGES for a category where they would be training defects.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
DATA=${1:-../shared/datasets/mvtec_ad/bottle}
OUT=${2:-runs/main}
PROFILE=${3:-cpu}
IMAGES=${4:-$DATA/test/*/01[0-2].png}
AF=.venv/bin/anomalyforge
$AF info "$DATA"
$AF generate --data "$DATA" --method croppaste --n 500 --seed 0 --size 256 --out "$OUT/generated/croppaste"
$AF preview "$OUT/generated/croppaste" --out "$OUT/generated/croppaste/preview.png"
$AF benchmark --data "$DATA" --methods croppaste,patchcore --profile "$PROFILE" --seed 0 \
  --run croppaste="$OUT/generated/croppaste" --save-models --out "$OUT/benchmark"
echo "report: $OUT/benchmark/report.html"
$AF predict "$OUT/benchmark/models/croppaste" "$IMAGES" --out "$OUT/predictions"
echo "masks: $OUT/predictions/masks/  heat maps: $OUT/predictions/overlays/  scores, verdicts, types: $OUT/predictions/predictions.csv"
