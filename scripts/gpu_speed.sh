#!/usr/bin/env bash
# Speed of the diffusion generators on a CUDA machine (issue 5: target >= 5 pairs/s at 256 px, fp16,
# on one H100): AnomalyDiffusion's blended sampler and DualAnoDiff, on random-weight SD 1.5-sized
# models, with each benchmark's CUDA defaults (fp16; 50 / 100 steps; batch 8 / 4).
#
#   bash scripts/gpu_speed.sh [OUT_DIR]
#
# Needs a python3 with CUDA PyTorch and transformers. diffusers (and importlib_metadata) are
# installed from wheels in .whl/ when that python3 lacks them, so the script also runs on an
# offline machine: beforehand, where pip works, `python3 -m pip download --no-deps diffusers
# importlib_metadata -d .whl`.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench_gpu}
mkdir -p "$out"
if ! python3 -c "import diffusers" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/anomalyforge_site .whl/*.whl
  export PYTHONPATH=/tmp/anomalyforge_site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD/src:${PYTHONPATH} PYTHONUNBUFFERED=1
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))" \
  | tee "$out/gpu.txt"
python3 benchmarks/bench_diffusion_speed.py --out "$out/diffusion_speed.json" 2>&1 | tee "$out/diffusion_speed.txt"
python3 benchmarks/bench_dualanodiff_speed.py --out "$out/dualanodiff_speed.json" 2>&1 | tee "$out/dualanodiff_speed.txt"
