"""TVG generation (issue 15): the variance-aware generator's ablation and the cost per generated image.

On the first K good training images of a category (training data only), the offline VAE
(`anomalyforge.diffusion.autoencoder.fit_autoencoder`, what `fewshot --goods vae` fits when no
--vae is given, at 64 px) is fitted once, and each latent of TVG's ablation (mu, mu + sigma,
mu + sigma*eps, the last over 3 noise seeds) is compared with the original image: SSIM
(scikit-image, RGB, data range 255) and PSNR, mean over the K images, both as decoded (at the
VAE's size, against the resized original) and as the generator delivers it at the study size
(the decoded variation, upsampled, added to the original). Then the in-process time per generated image
of each generator arm: the torchvision arms, the variance-aware VAE (after its fit), and one CLIP
guidance step of `--goods tvg` on a random-weight CLIP with ViT-B/16's configuration (speed does
not depend on the weights), extrapolated to the published 25 steps.

    python benchmarks/bench_tvg_goods.py ../shared/datasets/mvtec_ad/bottle --out tvg_goods.json

`--only ARM --n N` only generates N goods with one arm (vae: after a `--fit-steps` fit), for
timing the whole process from outside: the difference between N and 0 goods, over N, is the cost
per image, start-up and fit excluded.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from anomalyforge.data import few_shot_split, load_dataset
from anomalyforge.data.io import read_image
from anomalyforge.diffusion.autoencoder import (
    LATENT_SAMPLES,
    AutoencoderFit,
    fit_autoencoder,
    resize_images,
    sample_latent,
)
from anomalyforge.diffusion.blended import from_model_images, to_model_images
from anomalyforge.diffusion.clip import Clip, refine_latent
from anomalyforge.seeds import torch_generator
from anomalyforge.synth.good import (
    TORCHVISION_ARMS,
    TorchvisionGoodConfig,
    VaeGoodConfig,
    VaeGoods,
    torchvision_goods,
)


def similarity(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean SSIM and PSNR (dB) between two (N, H, W, 3) uint8 stacks."""
    ssim = [structural_similarity(x, y, channel_axis=2, data_range=255) for x, y in zip(a, b, strict=True)]
    psnr = [peak_signal_noise_ratio(x, y, data_range=255) for x, y in zip(a, b, strict=True)]
    return float(np.mean(ssim)), float(np.mean(psnr))


def vit_b16_clip() -> Clip:
    """A random-weight CLIPModel with openai/clip-vit-base-patch16's sizes (for timing only)."""
    from transformers import CLIPConfig, CLIPModel
    cfg = CLIPConfig(text_config={"hidden_size": 512, "intermediate_size": 2048, "num_attention_heads": 8,
                                  "num_hidden_layers": 12},
                     vision_config={"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
                                    "num_hidden_layers": 12, "image_size": 224, "patch_size": 16},
                     projection_dim=512)
    model = CLIPModel(cfg).eval().requires_grad_(False)
    mean = torch.tensor([0.481, 0.458, 0.408]).view(1, 3, 1, 1)
    std = torch.tensor([0.269, 0.261, 0.276]).view(1, 3, 1, 1)
    return Clip(model=model, tokenizer=None, side=224, mean=mean, std=std, device=torch.device("cpu"),
                source="random ViT-B/16")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path, help="category folder (MVTec layout)")
    ap.add_argument("--out", type=Path, required=True, help="JSON file for the figures")
    ap.add_argument("--k", type=int, default=5, help="good training images (the first K of the split)")
    ap.add_argument("--size", type=int, default=256, help="image side (the cpu profile's)")
    ap.add_argument("--fit-steps", type=int, default=AutoencoderFit().steps, help="steps of the offline VAE fit")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--clip-steps", type=int, default=2, help="CLIP guidance steps timed (0: skip)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", choices=("vae", *TORCHVISION_ARMS), default=None,
                    help="only generate --n goods with this arm (for whole-process timing)")
    ap.add_argument("--n", type=int, default=8, help="goods generated with --only")
    args = ap.parse_args()

    split = few_shot_split(load_dataset(args.data), progress=False)
    images = np.stack([read_image(x.image, args.size) for x in split.train_good[:args.k]])
    x = to_model_images(list(images))
    if args.only:
        if args.only == "vae":
            VaeGoods(VaeGoodConfig(fit=AutoencoderFit(steps=args.fit_steps)), split.category).generate(
                images, args.n, args.seed)
        else:
            torchvision_goods(images, args.n, args.seed, TorchvisionGoodConfig(args.only))
        return
    res: dict = {"category": split.category, "k": len(images), "size": args.size, "fit_steps": args.fit_steps,
                 "temperature": args.temperature, "threads": torch.get_num_threads()}

    t0 = time.perf_counter()
    ae = fit_autoencoder(images, args.seed, AutoencoderFit(steps=args.fit_steps))
    res["fit_s"] = round(time.perf_counter() - t0, 1)
    small = resize_images(images, ae.size or args.size)
    ablation: dict = {}
    with torch.no_grad():
        mu, sigma = ae.stats(to_model_images(list(small)))
        res["sigma_mean"] = float(sigma.mean())
        for mode in LATENT_SAMPLES:
            seeds = range(3) if mode == "mu+sigma*eps" else range(1)
            direct, added = [], []
            for s in seeds:
                z = torch.cat([sample_latent(mu[i:i + 1], sigma[i:i + 1], mode, args.temperature,
                                             torch_generator(s, i)) for i in range(len(images))])
                direct.append(similarity(np.stack(from_model_images(ae.decode(z))), small))
                delta = torch.nn.functional.interpolate(ae.decode(z) - ae.decode(mu), size=images.shape[1:3],
                                                        mode="bilinear", align_corners=False)
                added.append(similarity(np.stack(from_model_images((x + delta).clamp(-1, 1))), images))
            ablation[mode] = {
                f"decoded_{small.shape[1]}px": {"ssim": float(np.mean([a for a, _ in direct])),
                                                "psnr": float(np.mean([b for _, b in direct]))},
                f"added_to_original_{args.size}px": {"ssim": float(np.mean([a for a, _ in added])),
                                                     "psnr": float(np.mean([b for _, b in added]))}}
    res["ablation"] = ablation
    gen = VaeGoods(VaeGoodConfig(), split.category)
    gen.autoencoder = ae  # the fitted one: time generation only
    t0 = time.perf_counter()
    gen.generate(images, 8, seed=9)
    res["vae_s_per_image"] = round((time.perf_counter() - t0) / 8, 3)
    arms = {}
    for arm in TORCHVISION_ARMS:
        t0 = time.perf_counter()
        torchvision_goods(images, 16, 0, TorchvisionGoodConfig(arm))
        arms[arm] = round((time.perf_counter() - t0) / 16, 4)
    res["torchvision_s_per_image"] = arms
    if args.clip_steps:
        clip = vit_b16_clip()
        text = torch.nn.functional.normalize(torch.randn(512), dim=0)
        with torch.no_grad():
            z0 = ae.stats(to_model_images(list(small[:1])))[0]
        refine_latent(z0, ae.decode, clip, text, 1)  # warm-up
        t0 = time.perf_counter()
        refine_latent(z0, ae.decode, clip, text, args.clip_steps)
        step = (time.perf_counter() - t0) / args.clip_steps
        res["clip_guidance_s_per_step"] = round(step, 2)
        res["tvg_s_per_image_25_steps"] = round(25 * step + res["vae_s_per_image"], 1)
    args.out.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
