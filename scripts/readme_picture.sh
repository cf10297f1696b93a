#!/usr/bin/env bash
# Rebuilds docs/images/pairs.png, the picture at the top of README.md: 4 croppaste pairs per
# defect type of MVTec AD bottle (rows: source good image, generated defect, mask overlay),
# downscaled to 75 % and saved with 128 colours to stay small. Intermediate files go to a
# temporary folder; only the final PNG is written into the repository.
#   bash scripts/readme_picture.sh [DATA_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/datasets/mvtec_ad/bottle}
PY=${PYTHON:-.venv/bin/python}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} OMP_NUM_THREADS=1
"$PY" -m anomalyforge generate --data "$DATA" --method croppaste --n 4 --seed 0 --size 256 --out "$tmp/run" --no-progress
"$PY" -m anomalyforge preview "$tmp/run" --per-type 4 --out "$tmp/sheet.png"
mkdir -p docs/images
"$PY" - "$tmp/sheet.png" docs/images/pairs.png <<'PYEOF'
import sys
from PIL import Image
im = Image.open(sys.argv[1]).convert("RGB")
w, h = im.size
small = im.resize((w * 3 // 4, h * 3 // 4), Image.LANCZOS)
small.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(sys.argv[2], optimize=True)
print(sys.argv[2])
PYEOF
