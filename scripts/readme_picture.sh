#!/usr/bin/env bash
# Rebuilds docs/images/pairs.png, the picture at the top of README.md, from MVTec AD bottle:
#  - top: 4 croppaste pairs per defect type (rows: source good image, generated defect, mask);
#  - bottom: a model trained by `anomalyforge train` (croppaste, the `cpu` profile shortened to
#    100 pairs per type and 300 steps so the picture rebuilds in minutes) on held-out TEST images
#    (the highest-numbered image of each defect type, never in the few-shot training third, and
#    one good test image); rows: image with the ground-truth outline (green), heat map, mask
#    predicted at the model's recorded pixel threshold. The heat maps share one scale: 0 = the
#    median pixel score of the model's held-out good training images, 1 = the highest score in
#    the row.
# Downscaled and saved with 128 colours to stay small. Intermediate files go to a temporary
# folder; only the final PNG is written into the repository.
#   bash scripts/readme_picture.sh [DATA_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/datasets/mvtec_ad/bottle}
PY=${PYTHON:-.venv/bin/python}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
"$PY" -m anomalyforge generate --data "$DATA" --method croppaste --n 4 --seed 0 --size 256 --out "$tmp/run" --no-progress
"$PY" -m anomalyforge preview "$tmp/run" --per-type 4 --out "$tmp/sheet.png"
"$PY" -m anomalyforge train --data "$DATA" --method croppaste --profile cpu --n 100 --set steps=300 \
  --set cls_steps=30 --seed 0 --out "$tmp/model" --no-progress
mkdir -p docs/images
"$PY" - "$tmp/sheet.png" "$tmp/model" "$DATA" docs/images/pairs.png <<'PYEOF'
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from anomalyforge.data import load_dataset
from anomalyforge.data.io import read_image, read_mask
from anomalyforge.data.natsort import natural_sorted
from anomalyforge.deploy.predict import resize_for_model
from anomalyforge.pipelines.train import load_model
from anomalyforge.report.figures import heat_overlay, image_with_contour, mask_overlay

sheet, model_dir, data, out = Image.open(sys.argv[1]).convert("RGB"), sys.argv[2], sys.argv[3], sys.argv[4]
model = load_model(model_dir)
info = model.info
ds = load_dataset(data)
picks = []  # (label, image path, mask path or None): the highest-numbered test image of each type
for dtype in info.defect_types:
    items = natural_sorted((s for s in ds.samples if s.defect_type == dtype), key=lambda s: str(s.image))
    picks.append((dtype, items[-1].image, items[-1].mask))
goods = natural_sorted((s for s in ds.samples if s.defect_type == "good" and s.split == "test"),
                       key=lambda s: str(s.image))
picks.append(("good (test)", goods[-1].image, None))
imgs = [read_image(p) for _, p, _ in picks]
gts = [read_mask(m) > 0 if m else np.zeros(im.shape[:2], bool) for (_, _, m), im in zip(picks, imgs)]
x = np.stack([resize_for_model(im, info.image_size) for im in imgs])
maps = model.model.localizer.predict(x)
lo = float(info.display_scale["lo"]) if info.display_scale and info.display_scale.get("lo") is not None else 0.0
hi = float(maps.max())
tile = sheet.width // len(picks) - 4
rows = [[image_with_contour(im, gt, tile) for im, gt in zip(imgs, gts)],
        [heat_overlay(im, (m - lo) / max(hi - lo, 1e-12), gt, tile) for im, m, gt in zip(imgs, maps, gts)],
        [mask_overlay(im, m > info.thresholds.pixel, tile) for im, m in zip(imgs, maps)]]
head = 44
block = Image.new("RGB", (sheet.width, head + 3 * (tile + 4)), "white")
draw = ImageDraw.Draw(block)
draw.text((4, 2), "trained model on held-out test images; rows: image + true outline,", fill="black")
draw.text((4, 15), "heat map (one scale), predicted mask", fill="black")
for r, row in enumerate(rows):
    for c, arr in enumerate(row):
        block.paste(Image.fromarray(arr), (c * (tile + 4) + 2, head + r * (tile + 4)))
for c, (label, _, _) in enumerate(picks):
    draw.text((c * (tile + 4) + 4, 30), label, fill="black")
im = Image.new("RGB", (sheet.width, sheet.height + block.height), "white")
im.paste(sheet, (0, 0))
im.paste(block, (0, sheet.height))
w, h = im.size
small = im.resize((w * 3 // 4, h * 3 // 4), Image.LANCZOS)
small.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(out, optimize=True)
print(out)
PYEOF
