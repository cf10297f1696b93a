"""DualAnoDiff (Jin et al., CVPR 2025) on a diffusers Stable Diffusion checkpoint.

Two interrelated branches of one frozen UNet generate, from the same noise schedule, a whole
defective image ("a vfx with sks") and its defect part alone ("sks"); each branch has its own
LoRA, and after every attention layer the two exchange information token by token
(`anomalyforge.diffusion.dual_attention`). The mask is segmented from the generated part
(`anomalyforge.masks.part`), so image and mask come out aligned by construction.

Fit, per defect type (few-shot training split only; UNet, VAE and text encoder frozen): pairs of
(defect image, defect part = image inside its mask on a flat background), seeded flips, both
branches noised at the same timestep with their own noise, plain ε-MSE over both branches,
AdamW on the LoRA and interaction weights only. Defaults are the official code's (LoRA rank 32,
lr 2e-5, 5000 steps, batch 4, 512 px; sampling 100 steps, guidance 2.5).

Presets: the defaults are the official settings (`make_config({"preset": "paper"})` names them
explicitly; DualAnoDiff's published budget is itself small). Flips follow the official code: on
for every category but `cable` (`no_flip_categories`), whose parts have a fixed left-right layout.

Differences from the official code, on purpose: the text encoder stays frozen (the prompts'
rare token "sks" is learned by the UNet LoRA alone); the part background is chosen per defect
type from the defects' own colours (`masks.part.choose_background`; the official grey loses
grey defects) and the mask is read back by background keying instead of U²-Net (no weights
offline); the interaction starts from zero so the untrained model is the pretrained one.

Background compensation (BCM, `background_compensation=True`; off by default, as the official
main model, which recommends it for objects such as bottle, pill, toothbrush): the whole branch's
self-attention also attends to a background image, the object blacked out
(`anomalyforge.diffusion.background_compensation`). In fitting that is the defect image's own
background; in generation that of a good training image drawn by the pair's seed, which becomes
the pair's `source`. Object masks come from the classical `masks.foreground` segmentation (the
official code uses U²-Net masks); on a texture category the background image is all black.

Like the paper, the whole image is generated from noise (not painted into a good image), so a
pair's `source` is empty unless BCM names the good image whose background it used.

State folder: `dualanodiff.json` (config, category, defect types, backgrounds, losses) and one
`adapters-<i>.safetensors` per defect type.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from anomalyforge.atomic import write_bytes_atomic
from anomalyforge.data.fitdata import FitData
from anomalyforge.diffusion.augment import flip_pair, to_resolution
from anomalyforge.diffusion.background_compensation import BackgroundReference
from anomalyforge.diffusion.blended import (
    blended_sample,
    from_model_images,
    per_sample_randn,
    to_model_images,
)
from anomalyforge.diffusion.dual_attention import DualAdapters, deinterleave, interleave
from anomalyforge.diffusion.loading import load_ldm
from anomalyforge.diffusion.masked_loss import masked_diffusion_loss, train_params
from anomalyforge.diffusion.textual_inversion import tokenize
from anomalyforge.errors import ConfigError
from anomalyforge.masks.foreground import category_foregrounds, foreground_mask, is_whole_image
from anomalyforge.masks.part import BACKGROUND_CANDIDATES, background_image, choose_background, part_image, segment_part
from anomalyforge.seeds import Stream, numpy_rng, torch_generator
from anomalyforge.synth.anomalydiffusion import preset_config
from anomalyforge.synth.base import Generator, Pair, register
from anomalyforge.synth.state import read_state_meta, write_state_meta

STATE_FILE = "dualanodiff.json"
PART_FILE = "part.json"  # one fitted defect type (Generator.fit_part)


@dataclass
class DualAnoDiffConfig:
    """DualAnoDiff parameters; defaults are the official code's unless the comment says otherwise."""

    base_model: str | None = None  # diffusers folder or hub id of an SD 1.x/2.x checkpoint (required)
    device: str | None = None  # None: CUDA if available, else CPU
    precision: str = "auto"  # auto = bf16 on CUDA (fp32 if unsupported), fp32 on CPU; or fp32 / fp16 / bf16
    resolution: int = 512  # official: 512
    rank: int = 32  # official run scripts: LoRA rank 32 (one LoRA per branch)
    interaction: bool = True  # Self-Attention Interaction between the branches
    interaction_dim: int | None = None  # q/k/v width of the interaction; None = layer width (official:
    # with the LoRAs 112 M weights, 427 MiB per defect type on SD 1.5); 64 gives 19 M, 73 MiB
    fit_steps: int = 5000  # official: 5000 per defect type
    train_batch: int = 4  # official: 4 pairs (8 UNet rows)
    lr: float = 2e-5  # official: 2e-5, constant
    weight_decay: float = 1e-2  # official AdamW settings
    max_grad_norm: float = 1.0
    flip: bool = True  # official: random horizontal + vertical flips (turn off for oriented parts) ...
    no_flip_categories: tuple[str, ...] = ("cable",)  # ... except on these categories (official)
    whole_prompt: str = "a vfx with sks"  # official nested prompts
    part_prompt: str = "sks"
    part_background: str = "auto"  # auto (farthest from the defects' colours) or grey/green/...
    sampler: str = "ddim"  # ddim or ddpm (official: the checkpoint's PNDM)
    sampler_steps: int = 100  # official inference: 100 steps
    guidance: float = 2.5  # official inference: classifier-free guidance 2.5
    mask_min_contrast: float = 6.0  # ΔE below which a part pixel counts as background
    mask_tries: int = 3  # draws per seed while the part comes out empty
    background_compensation: bool = False  # BCM (official: optional, for objects on a plain background)
    bcm_dim: int = 320  # official: the background MLP's bottleneck width
    seed: int = 0  # training randomness (initialisation, batches, flips, noise, timesteps)
    progress: bool = True  # tqdm bars on stderr (also off when the run is, FitData.extra["progress"])
    preset: str = "paper"  # the defaults are the official settings; "smoke" only shortens the fit


PRESETS: dict[str, dict[str, Any]] = {"paper": {}, "smoke": {"fit_steps": 500, "sampler_steps": 50}}


def _adapter_file(index: int) -> str:
    return f"adapters-{index}.safetensors"


@register
class DualAnoDiff(Generator):
    """Whole defective image and defect part from two interrelated LoRA branches; mask from the part."""

    name = "dualanodiff"
    Config = DualAnoDiffConfig
    PRESETS = PRESETS
    batch_size = 4

    @classmethod
    def make_config(cls, overrides: dict[str, Any] | None = None) -> Any:
        """Defaults of the preset `overrides["preset"]` ("paper" = the defaults, or "smoke"), then `overrides`."""
        return preset_config(cls.Config, cls.PRESETS, {"preset": "paper", **dict(overrides or {})}, cls.name)

    def __init__(self, config: DualAnoDiffConfig | None = None) -> None:
        super().__init__(config)
        self.ldm: Any = None
        self.types: list[str] = []
        self.backgrounds: dict[str, tuple[int, int, int]] = {}
        self.adapters: dict[str, Any] = {}
        self.losses: dict[str, list[float]] = {}
        self._installed: tuple[str, dict] | None = None
        self._good_object_masks: tuple[list[np.ndarray], np.ndarray | None] | None = None
        self._progress = self.config.progress

    # ---- setup ---------------------------------------------------------------------------------
    def _load_model(self) -> None:

        c = self.config
        for name in ("fit_steps", "sampler_steps", "train_batch", "rank", "resolution", "mask_tries", "bcm_dim"):
            if int(getattr(c, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(c, name)}")
        if c.part_background != "auto" and c.part_background not in BACKGROUND_CANDIDATES:
            raise ConfigError(f"part_background must be auto or one of {', '.join(BACKGROUND_CANDIDATES)}, "
                              f"not {c.part_background!r}")
        key = (c.base_model, c.device, c.precision)
        if self.ldm is not None and getattr(self, "_ldm_key", None) == key:
            return
        ldm = load_ldm(c.base_model, c.device, c.precision)
        step = ldm.vae_scale_factor * 2 ** (len(ldm.unet.config.block_out_channels) - 1)
        if c.resolution % step:
            raise ConfigError(f"resolution {c.resolution} must be a multiple of {step} for {c.base_model}")
        self.ldm, self._ldm_key = ldm, key

    def _new_adapters(self, seed: int):

        with torch.random.fork_rng(devices=[]):  # seeded initialisation, global RNG left alone
            torch.manual_seed(seed)
            c = self.config
            bg = c.bcm_dim if c.background_compensation else None
            return DualAdapters.for_unet(self.ldm.unet, c.rank, c.interaction, c.interaction_dim,
                                         bg).to(self.ldm.device)

    def _use(self, defect_type: str | None) -> None:
        """Install the adapters of `defect_type` on the UNet (None: restore its own processors)."""
        if self._installed is not None:
            if self._installed[0] == defect_type:
                return
            self.ldm.unet.set_attn_processor(self._installed[1])
            self._installed = None
        if defect_type is not None:
            self._installed = (defect_type, self.adapters[defect_type].install(self.ldm.unet))

    def _text(self, prompts: list[str]) -> torch.Tensor:

        with torch.no_grad():
            return self.ldm.text_encoder(tokenize(self.ldm.tokenizer, prompts, self.ldm.device))[0].float()

    def _choose_backgrounds(self, data: FitData, types: Sequence[str]) -> dict[str, tuple[int, int, int]]:

        if self.config.part_background != "auto":
            return {t: BACKGROUND_CANDIDATES[self.config.part_background] for t in types}
        out = {}
        for t in types:
            pixels = np.concatenate([data.image(s)[data.mask(s) > 0] for s in data.defects[t]])
            out[t] = choose_background(pixels)[1]
        return out

    # ---- background compensation ---------------------------------------------------------------
    def _good_objects(self) -> tuple[list[np.ndarray], np.ndarray | None]:
        """Object masks of the good training images (computed once) and their pixel-wise majority;
        the majority is None on a texture category (every mask is the whole frame)."""
        if self._good_object_masks is None:
            assert self.data is not None  # set by fit()/load() before this is called

            if not self.data.good:
                raise ConfigError(f"{self.data.category}: background compensation needs good training images; "
                                  f"there are none")
            masks, texture = category_foregrounds([self.data.image(s) for s in self.data.good])
            consensus = None if texture or not masks else \
                np.where(np.mean([m > 0 for m in masks], axis=0) >= 0.5, 255, 0).astype(np.uint8)
            self._good_object_masks = (masks, consensus)
        return self._good_object_masks

    def _background(self, image: np.ndarray, defect_mask: np.ndarray) -> np.ndarray:
        """BCM input of a training defect image: its background, object and defect blacked out."""

        _, consensus = self._good_objects()
        if consensus is None:  # texture: the object is the whole frame
            return np.zeros_like(image)
        obj = foreground_mask(image)
        if is_whole_image(obj):  # segmentation failed on this image: the goods' majority shape
            obj = consensus
        return background_image(image, np.maximum(obj, defect_mask))

    def _good_background(self, seed: int) -> tuple[str, np.ndarray]:
        """BCM input for a generated pair: the background of a good training image drawn by its seed."""

        masks, _ = self._good_objects()
        assert self.data is not None  # only called from generate(), which checked it
        k = int(numpy_rng(seed, Stream.BACKGROUND).integers(len(self.data.good)))
        return str(self.data.good[k].image), background_image(self.data.image(self.data.good[k]), masks[k])

    def _compensation(self, defect_type: str, backgrounds: list[np.ndarray] | None, sched, noise,
                      guidance: bool = False):
        """The BCM reference pass for the next UNet calls (a null context without BCM)."""


        if backgrounds is None:
            return nullcontext()
        with torch.no_grad():
            lat = self.ldm.encode_images(to_model_images(backgrounds))
            uncond = None
            if guidance:  # the unconditional rows see a mid-grey image, as the official pipeline
                grey = self.ldm.encode_images(to_model_images([np.full_like(backgrounds[0], 128)]))
                uncond = grey.expand(len(backgrounds), -1, -1, -1)
        return BackgroundReference(self.ldm.unet, self.adapters[defect_type].store, sched.add_noise, lat, noise,
                                   uncond)

    # ---- fit -----------------------------------------------------------------------------------
    def fit_parts(self, data: FitData) -> list[str]:
        """One piece per defect type with few-shot masks: each type's LoRAs train on their own."""
        return [t for t in data.defect_types if data.defects[t]]

    def fit(self, data: FitData, state_dir: Path) -> None:
        """Train one pair of branch LoRAs (+ interaction) per defect type; save the state."""
        state_dir = Path(state_dir)
        dirs = {t: state_dir / f".part-{i}" for i, t in enumerate(self.fit_parts(data))}
        try:
            for t, d in dirs.items():
                self.fit_part(data, t, d)
            self.join_parts(data, dirs, state_dir)
        finally:
            for d in dirs.values():
                shutil.rmtree(d, ignore_errors=True)

    def _begin(self, data: FitData) -> list[str]:
        types = self.fit_parts(data)
        if not types:
            raise ConfigError(f"{data.category}: no few-shot defect images with masks to fit on")
        if self.data is not data:
            self._good_object_masks = None
        self.data, self.types = data, types
        self._progress = self.config.progress and bool(data.extra.get("progress", True))
        self.backgrounds = self._choose_backgrounds(data, types)
        return types

    def fit_part(self, data: FitData, part: str, part_dir: Path) -> None:
        """Train the LoRAs of defect type `part` (seeded by its place among the types) into
        `part_dir`: its adapter file and `part.json` (background colour, losses)."""
        self._load_model()
        types = self._begin(data)
        if part not in types:
            raise ConfigError(f"{data.category}: no few-shot defect type {part!r} to fit; have {', '.join(types)}")
        self._use(None)
        i = types.index(part)
        self.adapters[part] = self._new_adapters(self.config.seed * 1000 + i)
        losses = self.losses[part] = self._fit_type(data, part, i)
        part_dir = Path(part_dir)
        part_dir.mkdir(parents=True, exist_ok=True)
        weights = {k: v.detach().float().cpu().contiguous() for k, v in self.adapters[part].state_dict().items()}
        write_bytes_atomic(part_dir / _adapter_file(i), safetensors_bytes(weights))
        write_bytes_atomic(part_dir / PART_FILE, json.dumps({"defect_type": part, "index": i,
                                                             "losses": losses}).encode())

    def join_parts(self, data: FitData, part_dirs: dict[str, Path], state_dir: Path) -> None:
        """The state (`dualanodiff.json` + one adapter file per type) from the fitted types."""
        types = self._begin(data)
        missing = [t for t in types if t not in part_dirs or not (Path(part_dirs[t]) / PART_FILE).is_file()]
        if missing:
            raise ConfigError(f"{state_dir}: defect type(s) {', '.join(missing)} not fitted yet")
        state_dir = Path(state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        files, final = {}, {}
        for i, t in enumerate(types):
            files[t] = _adapter_file(i)
            src = Path(part_dirs[t])
            final[t] = (json.loads((src / PART_FILE).read_text())["losses"] or [None])[-1]
            write_bytes_atomic(state_dir / files[t], (src / files[t]).read_bytes())
        meta = {"method": self.name, "category": data.category, "defect_types": types,
                "adapter_files": files, "backgrounds": {t: list(v) for t, v in self.backgrounds.items()},
                "config": dataclasses.asdict(self.config), "final_loss": final}
        write_state_meta(state_dir / STATE_FILE, meta)

    def _fit_type(self, data: FitData, defect_type: str, index: int) -> list[float]:

        c, ldm = self.config, self.ldm
        rng = numpy_rng(c.seed, index)
        torch_gen = torch_generator(c.seed, index)
        sched = ldm.make_scheduler("ddpm")
        samples = data.defects[defect_type]
        bg = self.backgrounds[defect_type]
        text = self._text([c.whole_prompt, c.part_prompt])
        cond = interleave(text[:1].expand(c.train_batch, -1, -1), text[1:].expand(c.train_batch, -1, -1))

        backs = [self._background(data.image(s), data.mask(s)) for s in samples] if c.background_compensation else None
        flip = c.flip and data.category not in tuple(c.no_flip_categories)

        def loss_fn(step: int) -> torch.Tensor:
            wholes, parts, bgs = [], [], []
            for _ in range(c.train_batch):
                k = int(rng.integers(len(samples)))
                s = samples[k]
                img = to_resolution(data.image(s), c.resolution)
                m = to_resolution(data.mask(s), c.resolution, mask=True)
                if backs is not None:  # the background image takes the same flips
                    img = np.concatenate([img, to_resolution(backs[k], c.resolution)], axis=2)
                if flip:
                    img, m = flip_pair(img, m, rng)
                img, back = img[..., :3], img[..., 3:]
                wholes.append(img)
                parts.append(part_image(img, m, bg))
                bgs.append(back)
            lat = interleave(ldm.encode_images(to_model_images(wholes)), ldm.encode_images(to_model_images(parts)))
            t = torch.randint(0, sched.config.num_train_timesteps, (c.train_batch,), generator=torch_gen)
            with self._compensation(defect_type, bgs if backs is not None else None, sched,
                                    lambda shape: torch.randn(shape, generator=torch_gen)):
                return masked_diffusion_loss(ldm, sched, lat, cond, None, torch_gen, timesteps=t.repeat_interleave(2))

        adapters = self.adapters[defect_type]
        self._use(defect_type)
        adapters.train()
        try:
            return train_params(list(adapters.parameters()), loss_fn, c.fit_steps, c.lr,
                                desc=f"{self.name} fit {defect_type}", progress=self._progress,
                                weight_decay=c.weight_decay, max_grad_norm=c.max_grad_norm, dtype=ldm.dtype,
                                device=ldm.device)
        finally:
            adapters.eval()
            self._use(None)

    # ---- load ----------------------------------------------------------------------------------
    def load(self, data: FitData, state_dir: Path) -> None:
        """Restore the per-type adapters saved by `fit`; the state must be this category's."""

        state_dir = Path(state_dir)
        meta = read_state_meta(state_dir / STATE_FILE, self.name, data.category, self.config,
                               ("rank", "interaction", "interaction_dim", "resolution", "whole_prompt", "part_prompt",
                                "background_compensation", "bcm_dim"))
        self._load_model()
        self._use(None)
        self.data = data
        self._progress = self.config.progress and bool(data.extra.get("progress", True))
        self.types = list(meta["defect_types"])
        self.backgrounds = {t: cast(tuple[int, int, int], tuple(int(x) for x in v))
                            for t, v in meta["backgrounds"].items()}
        self._good_object_masks = None
        for t in self.types:
            path = state_dir / meta["adapter_files"][t]
            if not path.is_file():
                raise ConfigError(f"{path}: adapter weights of defect type {t!r} missing (re-run fit)")
            adapters = self._new_adapters(0)
            try:
                adapters.load_state_dict(load_file(str(path)))
            except RuntimeError:
                raise ConfigError(f"{path}: adapters do not fit the UNet of {self.config.base_model} "
                                  f"(fitted on another base model?)") from None
            self.adapters[t] = adapters.eval()

    # ---- generate ------------------------------------------------------------------------------
    def generate(self, defect_type: str, seeds: Sequence[int]) -> list[Pair]:
        """One pair per seed: both branches sampled together, mask segmented from the part; a seed
        whose part comes out empty is redrawn on a further noise stream (up to `mask_tries`)."""

        if self.ldm is None or self.data is None:
            raise ConfigError(f"{self.name}: call fit or load before generate")
        if defect_type not in self.types:
            raise ConfigError(f"defect type {defect_type!r} was not fitted; fitted: {', '.join(self.types)}")
        c = self.config
        bg = self.backgrounds[defect_type]
        found: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, int]] = {}
        todo = list(range(len(seeds)))
        sources, backgrounds = [""] * len(seeds), None
        if c.background_compensation:
            sources, backgrounds = map(list, zip(*(self._good_background(s) for s in seeds), strict=False))
        for attempt in range(c.mask_tries):
            if not todo:
                break
            backs = None if backgrounds is None else [backgrounds[i] for i in todo]
            wholes, parts = self._sample(defect_type, [seeds[i] for i in todo], attempt, backs)
            left = []
            for i, whole, part in zip(todo, wholes, parts, strict=False):
                mask = segment_part(part, bg, c.mask_min_contrast)
                found[i] = (whole, part, mask, attempt)
                if not mask.any():
                    left.append(i)
            todo = left
        pairs = []
        for i, seed in enumerate(seeds):
            whole, part, mask, attempt = found[i]
            if not mask.any():
                raise ConfigError(f"{self.name}: the part branch of {defect_type!r} drew only background for seed "
                                  f"{seed} in {c.mask_tries} tries; fit longer or lower mask_min_contrast")
            image, mask = self._to_size(whole, mask)
            params = {"seed": int(seed), "from": "noise", "sampler": c.sampler, "sampler_steps": c.sampler_steps,
                      "guidance": c.guidance, "part_background": list(bg), "redraws": attempt}
            if attempt:
                params["rejected_because"] = {"empty part": attempt}
            if c.background_compensation:
                params["background_from"] = sources[i]
            pairs.append(Pair(image=image, mask=mask, source=sources[i], params=params))
        return pairs

    def _sample(self, defect_type: str, seeds: Sequence[int], attempt: int,
                backgrounds: list[np.ndarray] | None = None) -> tuple[list, list]:
        """Whole images and part images (at `resolution`) for `seeds`, noise stream `attempt`;
        `backgrounds` (one per seed, all seeds of the call): the BCM's background images."""

        c, ldm = self.config, self.ldm
        b = len(seeds)
        gens = [torch_generator(s, 2 * attempt + branch) for s in seeds for branch in (0, 1)]
        text = self._text([c.whole_prompt, c.part_prompt, ""])
        cond = interleave(text[0:1].expand(b, -1, -1), text[1:2].expand(b, -1, -1))
        uncond = text[2:3].expand(2 * b, -1, -1)
        lat_hw = c.resolution // ldm.vae_scale_factor
        shape = torch.zeros(2 * b, ldm.latent_channels, lat_hw, lat_hw)
        self._use(defect_type)
        backs = None
        if backgrounds is not None:

            backs = [to_resolution(b, c.resolution) for b in backgrounds]
        ref_gens = [torch_generator(s, Stream.REFERENCE_NOISE + 2 * attempt) for s in seeds]
        with self._compensation(defect_type, backs, ldm.make_scheduler("ddpm"),
                                lambda shape: per_sample_randn((len(ref_gens), *shape[1:]), ref_gens).repeat(
                                    shape[0] // len(ref_gens), 1, 1, 1), guidance=c.guidance != 1.0):
            lat = blended_sample(ldm, cond, shape, None, gens, steps=c.sampler_steps, sampler=c.sampler,
                                 uncond=uncond, guidance_scale=c.guidance, progress=self._progress)
        with torch.no_grad():
            whole, part = deinterleave(lat)
            return from_model_images(ldm.decode_latents(whole)), from_model_images(ldm.decode_latents(part))

    def _to_size(self, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert self.data is not None  # only called from generate(), which checked it
        size = self.data.size
        if size == image.shape[0]:
            return image, mask
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if size < image.shape[0]
                           else cv2.INTER_CUBIC)
        # a cell is defect when any of its source pixels is: a thin part never vanishes when shrunk
        mask = np.where(cv2.resize(mask, (size, size), interpolation=cv2.INTER_AREA) > 0, 255, 0).astype(np.uint8)
        return image, mask
