"""Speed and size of DualAnoDiff at Stable-Diffusion-1.5 size: sampling (both branches, with
classifier-free guidance: 4 UNet rows per pair), one training step, and the adapters per type.

Uses the random-weight SD 1.5-sized UNet + VAE of `bench_diffusion_speed.build_sd15` (speed does
not depend on weight values). Sampling runs `anomalyforge.diffusion.blended.blended_sample` with no
mask over interleaved (whole, part) rows with the dual processors installed, and decodes both
images; it is also timed with the UNet's own processors at the same batch, to show what the two
branches and the interaction cost, and with the background compensation module on (`dual+bcm`:
a reference pass of the background before every UNet call, keys/values fused in the whole
branch's self-attention; its gates are set non-zero so the fusion is really computed). The
training step is forward + backward + AdamW on the LoRAs and interaction of one pair batch
(`--train-batch` pairs), with and without the BCM. On CPU use --steps 2: per-pair figures at the
official 100 steps are then extrapolated and labelled so; on CUDA it runs fp16.

    .venv/bin/python benchmarks/bench_dualanodiff_speed.py --steps 2 --batch 1 --out bench_dualanodiff_speed.json
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_diffusion_speed import build_sd15, sync  # noqa: E402


def _bcm(ldm, adapters, rows: int, size: int, guidance_rows: bool):
    """The BCM reference context for `rows` pairs (random background latents), or a null context."""
    from contextlib import nullcontext

    from anomalyforge.diffusion.background_compensation import BackgroundReference

    if adapters is None or not adapters.has_background:
        return nullcontext()
    g = torch.Generator().manual_seed(2)
    lat = torch.randn(rows, 4, size // 8, size // 8, generator=g).to(ldm.device)
    return BackgroundReference(ldm.unet, adapters.store, ldm.make_scheduler("ddpm").add_noise, lat,
                               lambda shape: torch.randn(shape, generator=g), lat if guidance_rows else None)


def _label(adapters) -> str:
    return "plain" if adapters is None else "dual+bcm" if adapters.has_background else "dual"


def time_sampling(ldm, adapters, size: int, batch: int, steps: int, guidance: float) -> dict:
    from anomalyforge.diffusion.blended import blended_sample
    from anomalyforge.diffusion.dual_attention import deinterleave

    dev = ldm.device
    g = torch.Generator().manual_seed(0)
    cond = torch.randn(2 * batch, 77, 768, generator=g)
    uncond = torch.randn(2 * batch, 77, 768, generator=g)
    shape = torch.zeros(2 * batch, 4, size // 8, size // 8)
    gens = [torch.Generator().manual_seed(i) for i in range(2 * batch)]
    stamps: list[float] = []

    def before(i, t, x, x0):
        sync(dev)
        stamps.append(time.perf_counter())

    prev = adapters.install(ldm.unet) if adapters is not None else None
    try:
        with _bcm(ldm, adapters, batch, size, guidance != 1.0):
            lat = blended_sample(ldm, cond, shape, None, gens, steps=steps, uncond=uncond, guidance_scale=guidance,
                                 before_step=before)
        sync(dev)
        stamps.append(time.perf_counter())
        t0 = time.perf_counter()
        with torch.no_grad():
            for half in deinterleave(lat):
                ldm.decode_latents(half)
        sync(dev)
        t_decode = time.perf_counter() - t0
    finally:
        if prev is not None:
            ldm.unet.set_attn_processor(prev)
    step_times = np.diff(stamps)
    per_step = float(np.mean(step_times[1:] if len(step_times) > 1 else step_times))
    return {"size": size, "batch_pairs": batch, "processors": _label(adapters),
            "per_step_s": round(per_step, 3), "decode_s": round(t_decode, 3),
            "per_pair_s_at_100": round((t_decode + 100 * per_step) / batch, 2),
            "per_pair_s_at_50": round((t_decode + 50 * per_step) / batch, 2)}


def time_training(ldm, adapters, size: int, batch: int, steps: int) -> dict:
    from anomalyforge.diffusion.dual_attention import interleave

    dev = ldm.device
    g = torch.Generator().manual_seed(1)
    lat = interleave(torch.randn(batch, 4, size // 8, size // 8, generator=g),
                     torch.randn(batch, 4, size // 8, size // 8, generator=g)).to(dev)
    cond = torch.randn(2 * batch, 77, 768, generator=g).to(dev, ldm.dtype)
    t = torch.randint(0, 1000, (batch,), generator=g).repeat_interleave(2).to(dev)
    params = list(adapters.parameters())
    opt = torch.optim.AdamW(params, lr=2e-5, weight_decay=1e-2)
    prev = adapters.install(ldm.unet)
    times = []
    try:
        for _ in range(steps):
            sync(dev)
            t0 = time.perf_counter()
            with _bcm(ldm, adapters, batch, size, False):
                pred = ldm.unet(lat.to(ldm.dtype), t, encoder_hidden_states=cond).sample
            loss = ((pred.float() - lat.float()) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sync(dev)
            times.append(time.perf_counter() - t0)
    finally:
        ldm.unet.set_attn_processor(prev)
    per = float(np.mean(times[1:] if len(times) > 1 else times))
    peak = torch.cuda.max_memory_allocated() / 2 ** 30 if dev.type == "cuda" else None
    return {"size": size, "train_batch_pairs": batch, "processors": _label(adapters), "step_s": round(per, 3),
            "fit_5000_steps_h": round(5000 * per / 3600, 2), "cuda_peak_gib": peak and round(peak, 2)}


def main(argv: list[str] | None = None) -> int:
    from anomalyforge.diffusion.dual_attention import DualAdapters
    from anomalyforge.diffusion.loading import pick_diffusion_device, pick_dtype

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None, help="cpu / cuda (default: cuda if available)")
    ap.add_argument("--steps", type=int, default=None, help="sampling steps to run (default 100 on CUDA, 2 on CPU)")
    ap.add_argument("--batch", type=int, default=None, help="pairs per sampling batch (default 4 on CUDA, 1 on CPU)")
    ap.add_argument("--sizes", default="256,512")
    ap.add_argument("--train-batch", type=int, default=None, help="pairs per training step (default 4 CUDA, 1 CPU)")
    ap.add_argument("--train-steps", type=int, default=3)
    ap.add_argument("--train-sizes", default="256", help="sizes of the training-step timing ('' to skip)")
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--interaction-dim", type=int, default=None)
    ap.add_argument("--guidance", type=float, default=2.5)
    ap.add_argument("--no-bcm", action="store_true", help="skip the background-compensation arms")
    ap.add_argument("--out", type=Path, default=Path("bench_dualanodiff_speed.json"))
    args = ap.parse_args(argv)
    dev = pick_diffusion_device(args.device)
    dtype = pick_dtype(dev, "auto")
    cuda = dev.type == "cuda"
    steps = args.steps or (100 if cuda else 2)
    batch = args.batch or (4 if cuda else 1)
    train_batch = args.train_batch or (4 if cuda else 1)
    ldm = build_sd15(dev, dtype)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        adapters = DualAdapters.for_unet(ldm.unet, args.rank, True, args.interaction_dim).to(dev)
        bcm = None
        if not args.no_bcm:
            bcm = DualAdapters.for_unet(ldm.unet, args.rank, True, args.interaction_dim, 320).to(dev)
            with torch.no_grad():
                for layer in bcm.values():
                    if layer.background is not None:
                        layer.background.gate.fill_(0.1)
    n_params = sum(p.numel() for p in adapters.parameters())
    n_bcm = 0 if bcm is None else sum(p.numel() for p in bcm.parameters()) - n_params
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    for size in sizes:
        for ad in [a for a in (adapters, bcm) if a is not None] + [None]:
            print(f"sampling {size}px {_label(ad)} batch={batch} steps={steps} ...",
                  file=sys.stderr, flush=True)
            rows.append(time_sampling(ldm, ad, size, batch, steps, args.guidance))
    train = []
    for size in [int(s) for s in args.train_sizes.split(",") if s.strip()]:
        for ad in (a for a in (adapters, bcm) if a is not None):
            print(f"training step {size}px {_label(ad)} batch={train_batch} ...", file=sys.stderr, flush=True)
            train.append(time_training(ldm, ad, size, train_batch, args.train_steps))
    extrap = steps != 100
    cpu = platform.processor() or platform.machine()
    print(f"\ndevice: {dev} ({dtype}), threads: {torch.get_num_threads()}, {cpu}")
    print(f"adapters per defect type: {n_params / 1e6:.1f} M weights ({n_params * 4 / 2 ** 20:.0f} MiB fp32), "
          f"rank {args.rank}, interaction width {args.interaction_dim or 'full'}"
          + (f"; the BCM adds {n_bcm / 1e6:.1f} M ({n_bcm * 4 / 2 ** 20:.0f} MiB)" if bcm is not None else ""))
    print(f"{'size':>5} {'procs':>6} {'pairs':>5} {'s/step':>8} {'decode':>7} "
          f"{'s/pair@100' + (' (extrap.)' if extrap else ''):>21} {'s/pair@50':>10}")
    for r in rows:
        print(f"{r['size']:>5} {r['processors']:>6} {r['batch_pairs']:>5} {r['per_step_s']:>8.3f} "
              f"{r['decode_s']:>7.2f} {r['per_pair_s_at_100']:>21.2f} {r['per_pair_s_at_50']:>10.2f}")
    for r in train:
        print(f"training {r['size']}px {r['processors']}, {r['train_batch_pairs']} pair(s)/step: "
              f"{r['step_s']:.2f} s/step "
              f"-> 5000 steps {r['fit_5000_steps_h']:.1f} h" + (f", peak {r['cuda_peak_gib']} GiB" if cuda else ""))
    if extrap:
        print(f"s/pair figures are extrapolated: (decode + N x mean step time) / pairs, from {steps} measured step(s)")
    meta = {"device": str(dev), "dtype": str(dtype), "steps_run": steps, "extrapolated": extrap,
            "torch": torch.__version__, "threads": torch.get_num_threads(), "adapter_params": n_params,
            "bcm_params": n_bcm, "rank": args.rank, "interaction_dim": args.interaction_dim, "guidance": args.guidance,
            "model": "random-weight SD1.5-sized UNet2DConditionModel + AutoencoderKL",
            "sampling": rows, "training": train}
    args.out.write_text(json.dumps(meta, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
