"""Seconds per generated pair of the diffusion core at Stable-Diffusion-1.5 size.

Builds the SD 1.5 UNet (diffusers' default UNet2DConditionModel config with cross-attention 768)
and VAE (128/256/512/512) with random weights — speed does not depend on the weights — and times
`anomalyforge.diffusion.blended.blended_sample` (DDIM, batched, per-seed generators) plus the VAE
encode of the good images and the final decode, with and without Adaptive Attention Re-weighting
(AAR as in the official code: per latent cell from x_t and the good latents inside the dilated
mask M'(t), multiplying the anomaly tokens' pre-softmax logits; the same M'(t) blends).

On CPU use --steps 2 (or 3): the table then shows the measured per-step time and a clearly
labelled extrapolation to 50 steps  (encode + decode + 50 x step) / batch. On CUDA it runs fp16.

    .venv/bin/python benchmarks/bench_diffusion_speed.py --steps 2 --batch 2 --out bench_diffusion_speed.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch


def build_sd15(device: torch.device, dtype: torch.dtype):
    """Random-weight SD 1.5-sized UNet + VAE wrapped in an `LDM` (no text encoder needed here)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from anomalyforge.diffusion.loading import LDM

    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4,
                        sample_size=512)
    for m in (unet, vae):
        m.requires_grad_(False)
        m.eval()
        m.to(device)
        if dtype != torch.float32:
            m.to(dtype=dtype)
    sched = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                 set_alpha_to_one=False, steps_offset=1, num_train_timesteps=1000)
    return LDM(unet=unet, vae=vae, text_encoder=None, tokenizer=None, scheduler_config=sched, device=device,
               dtype=dtype, source="random SD1.5-sized")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_case(ldm, size: int, batch: int, steps: int, reweight: str) -> dict:
    from anomalyforge.diffusion.attention import (
        AttentionController,
        blend_mask_schedule,
        install_processors,
        make_reweight_hook,
    )
    from anomalyforge.diffusion.blended import blended_sample
    from anomalyforge.diffusion.masked_loss import mask_to_latent

    dev = ldm.device
    g = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 3, size, size, generator=g) * 2 - 1
    masks = []
    for _ in range(batch):
        m = np.zeros((size, size), np.uint8)
        m[size // 4: size // 2, size // 3: size // 2] = 255
        m[size * 5 // 8: size * 3 // 4, size // 2: size * 3 // 4] = 255
        masks.append(m)
    cond = torch.randn(batch, 77, 768, generator=g)
    gens = [torch.Generator().manual_seed(i) for i in range(batch)]
    sync(dev)
    t0 = time.perf_counter()
    y0 = ldm.encode_images(images)
    sync(dev)
    t_encode = time.perf_counter() - t0
    m_lat = mask_to_latent(torch.from_numpy(np.stack(masks) > 0).float()[:, None], tuple(y0.shape[-2:]))
    ctrl = AttentionController(token_positions=list(range(1, 9)))
    schedule = blend_mask_schedule(m_lat) if reweight != "off" else None
    hook = make_reweight_hook(ctrl, y0, schedule) if schedule is not None else None
    stamps: list[float] = []

    def before(i, t, x, x0):
        sync(dev)
        stamps.append(time.perf_counter())
        if hook is not None:
            hook(i, t, x, x0)

    prev = install_processors(ldm.unet, ctrl) if reweight != "off" else None
    try:
        lat = blended_sample(ldm, cond, y0, m_lat, gens, steps=steps, sampler="ddim", before_step=before,
                             mask_schedule=schedule)
        sync(dev)
        stamps.append(time.perf_counter())
        t0 = time.perf_counter()
        ldm.decode_latents(lat)
        sync(dev)
        t_decode = time.perf_counter() - t0
    finally:
        if prev is not None:
            ldm.unet.set_attn_processor(prev)
    step_times = np.diff(stamps)
    # the first step has no x̂_0 yet (no re-weighting decode) and pays warm-up: exclude it when possible
    steady = step_times[1:] if len(step_times) > 1 else step_times
    per_step = float(np.mean(steady))
    return {"size": size, "batch": batch, "reweight": reweight, "steps_run": steps,
            "step_s": [round(float(s), 3) for s in step_times], "per_step_s": round(per_step, 3),
            "encode_s": round(t_encode, 3), "decode_s": round(t_decode, 3),
            "per_pair_s_at_50": round((t_encode + t_decode + 50 * per_step) / batch, 2),
            "per_pair_s_measured": round((t_encode + t_decode + float(step_times.sum())) / batch, 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None, help="cpu / cuda (default: cuda if available)")
    ap.add_argument("--steps", type=int, default=None, help="DDIM steps to run (default 50 on CUDA, 2 on CPU)")
    ap.add_argument("--batch", type=int, default=None, help="pairs per batch (default 8 on CUDA, 2 on CPU)")
    ap.add_argument("--sizes", default="256,512")
    ap.add_argument("--reweight", default="off,aar", help="comma list of off / aar")
    ap.add_argument("--out", type=Path, default=Path("bench_diffusion_speed.json"))
    args = ap.parse_args(argv)
    from anomalyforge.diffusion.loading import pick_diffusion_device, pick_dtype

    dev = pick_diffusion_device(args.device)
    dtype = pick_dtype(dev, "auto")
    steps = args.steps or (50 if dev.type == "cuda" else 2)
    batch = args.batch or (8 if dev.type == "cuda" else 2)
    ldm = build_sd15(dev, dtype)
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        for rw in args.reweight.split(","):
            print(f"timing {size}px reweight={rw} batch={batch} steps={steps} ...", file=sys.stderr, flush=True)
            rows.append(time_case(ldm, size, batch, steps, rw))
    extrap = steps != 50
    cpu = platform.processor() or platform.machine()
    print(f"\ndevice: {dev} ({dtype}), threads: {torch.get_num_threads()}, {cpu}")
    head = f"{'size':>5} {'reweight':>8} {'batch':>5} {'s/step':>8} {'encode':>7} {'decode':>7} " \
           f"{'s/pair@50' + (' (extrap.)' if extrap else ''):>20} {'s/pair measured':>16}"
    print(head)
    for r in rows:
        print(f"{r['size']:>5} {r['reweight']:>8} {r['batch']:>5} {r['per_step_s']:>8.3f} {r['encode_s']:>7.2f} "
              f"{r['decode_s']:>7.2f} {r['per_pair_s_at_50']:>20.2f} {r['per_pair_s_measured']:>16.2f}")
    if extrap:
        print(f"s/pair@50 is extrapolated: (encode + decode + 50 x mean step time) / batch, from {steps} "
              f"measured step(s) (first step excluded from the mean when more than one ran)")
    meta = {"device": str(dev), "dtype": str(dtype), "steps_run": steps, "batch": batch,
            "extrapolated_to_50": extrap, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "model": "random-weight SD1.5-sized UNet2DConditionModel + AutoencoderKL", "rows": rows}
    args.out.write_text(json.dumps(meta, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
