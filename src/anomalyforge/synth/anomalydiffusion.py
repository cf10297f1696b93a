"""AnomalyDiffusion (Hu et al., AAAI 2024) on a diffusers Stable Diffusion checkpoint.

Fit (few-shot training split only), all diffusion weights frozen:
  * Spatial Anomaly Embedding: per defect type k = 8 learned anomaly tokens e_a, plus n = 4 spatial
    tokens e_s = E(mask) from a ResNet-50 + FPN spatial encoder shared by all types; trained jointly
    with the masked diffusion loss ||m ⊙ (ε − ε_θ(z_t, t, {e_a, e_s}))||², batch 4, lr 5e-3, prompts
    from textual inversion's templates ("a photo of a <tokens>", ...), with the official
    augmentation (p = 1/2: flips, 0–20° rotation, crop keeping the defect box).
  * Mask embedding e_m (k′ = 16 tokens per type, initialised from "crack", as the official code) by
    textual inversion on the few-shot masks (mask_source="textual_inversion"), or no mask model
    (mask_source="synthesis").
Generate (per seed): a mask (sampled from e_m: DDIM, η = 1, guidance 5, official threshold and
border rule), a good training image, then blended latent sampling conditioned on {e_a, E(mask)}
with Adaptive Attention Re-weighting (`anomalyforge.diffusion.attention`), decoded and composited
so pixels outside the dilated, feathered mask are exactly the good image's.

Presets: `make_config({"preset": "paper", ...})` gives the published settings (300 k steps for
e_a + E, 30 k for e_m as the official config, DDIM 200 steps with η = 1 and no guidance, 256 px);
the default "smoke" preset keeps the same method with cheap budgets (5 k fitting steps, 50
sampling steps) for trials and tests — it is not the paper's budget.

Deliberate differences from the published method (see docs/fidelity.md):
  * Base model: the paper fine-tunes embeddings on the 256-px LDM of Rombach et al. (BERT-like text
    encoder); here any SD 1.x/2.x checkpoint (CLIP text encoder) stands in. SD 1.x is trained at
    512 px, so by default the resolution follows the model (512 on SD 1.x); the paper preset uses
    256 as published, which SD 1.5 renders worse than 512.
  * AAR is on for texture categories only ("texture", as the official code), decided from the good
    images' foregrounds (`masks.foreground.category_foregrounds`).
  * The final composite keeps the good image's exact pixels outside the dilated mask (the official
    code keeps the decoded image); the blending mask uses max-pooling so thin defects keep cells.

State folder: `anomalydiffusion.json` (config, category, defect types, tokens, base model),
`embeddings.safetensors` (e_a and e_m), `spatial_encoder.safetensors`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from anomalyforge.atomic import write_bytes_atomic
from anomalyforge.data.fitdata import FitData
from anomalyforge.diffusion.attention import (
    AttentionController,
    blend_mask_schedule,
    install_processors,
    make_reweight_hook,
)
from anomalyforge.diffusion.augment import augment_pair, to_resolution
from anomalyforge.diffusion.blended import (
    blended_sample,
    composite,
    feather_mask,
    from_model_images,
    to_model_images,
)
from anomalyforge.diffusion.loading import load_ldm
from anomalyforge.diffusion.mask_generation import acceptable, mask_to_rgb, sample_masks, synthesize_mask
from anomalyforge.diffusion.masked_loss import loss_mask_to_latent, mask_to_latent, masked_diffusion_loss, train_params
from anomalyforge.diffusion.spatial_encoder import SpatialEncoder
from anomalyforge.diffusion.textual_inversion import (
    EmbeddingInjector,
    TokenBank,
    add_placeholder_tokens,
    encode_prompts,
    init_vectors,
    placeholder_names,
    template_prompt,
    token_positions,
)
from anomalyforge.errors import ConfigError
from anomalyforge.masks.foreground import category_foregrounds
from anomalyforge.seeds import Stream, numpy_rng, torch_generator
from anomalyforge.synth.base import Generator, Pair, register
from anomalyforge.synth.state import read_state_meta, write_state_meta

STATE_FILE = "anomalydiffusion.json"
EMB_FILE = "embeddings.safetensors"
ENC_FILE = "spatial_encoder.safetensors"
SPATIAL_GROUP = "spatial"


REWEIGHT_MODES = ("texture", "always", "never")


@dataclass
class AnomalyDiffusionConfig:
    """AnomalyDiffusion parameters: the method's settings are the published ones; the budgets
    (fit_steps, sampler_steps, ...) are cheap "smoke" values unless `preset` is "paper"
    (`AnomalyDiffusion.make_config({"preset": "paper"})`, see `PRESETS`).

    fit_steps / sampler_steps are what `anomalyforge generate --fit-steps/--sampler-steps` override
    (a smoke run on the tiny model takes seconds with 2–3 / 2–4).
    """

    preset: str = "smoke"  # "smoke" (cheap budgets, for trials and tests) or "paper" (published settings)
    base_model: str | None = None  # diffusers folder or hub id of an SD 1.x/2.x checkpoint (required)
    device: str | None = None  # None: CUDA if available, else CPU
    precision: str = "auto"  # auto = bf16 on CUDA (fp32 if unsupported), fp32 on CPU; or fp32 / fp16 / bf16
    resolution: int | None = None  # None: the base model's native size (512 on SD 1.x); paper: 256 (LDM)
    anomaly_tokens: int = 8  # paper: k = 8 anomaly-embedding tokens per type
    spatial_tokens: int = 4  # paper: n = 4 spatial-embedding tokens
    mask_tokens: int = 16  # k′ mask-embedding tokens per type (official code: 16)
    init_word: str = "anomaly"  # official code initialises the anomaly embedding from "anomaly"
    mask_init_word: str = "crack"  # ... and the mask embedding from "crack"
    templates: bool = True  # official: textual-inversion prompt templates ("a photo of a {}", ...)
    fit_steps: int = 5000  # smoke budget; paper: 300 k steps for e_a + E
    mask_fit_steps: int | None = None  # mask-embedding steps; None = same as fit_steps; official: 30 k
    train_batch: int = 4  # paper: batch size 4
    lr: float = 5e-3  # paper / official config: 5e-3
    augment: bool = True  # official: random flips, rotation, crop keeping the defect box ...
    augment_p: float = 0.5  # ... applied to a training pair with probability 1/2
    max_rotation: float = 20.0  # official: a whole number of degrees in [0, 20]
    spatial_backbone: str = "resnet50"  # paper: ResNet-50 + FPN; "tiny" or resnet18 for tests
    spatial_backbone_weights: str | None = None  # None offline; "DEFAULT" or a local .pth
    spatial_fpn_channels: int = 256
    mask_source: str = "textual_inversion"  # paper; or "synthesis" (GAA-style enhance + place)
    mask_guidance: float = 5.0  # official: classifier-free guidance 5 for mask generation
    mask_sampler_steps: int | None = None  # DDIM steps per mask; None = sampler_steps; official: 100
    mask_eta: float = 1.0  # official: DDIM η = 1 for masks
    mask_threshold: float = 0.8  # official: channel mean > 0.8 on [-1, 1]
    mask_border_share: float = 1 / 3  # official: reject when one border line has > w/3 mask pixels
    mask_max_area: float = 1.0  # reject masks covering more than this share (1.0: no rule, official)
    mask_tries: int = 3  # sampled-mask attempts per seed before falling back to synthesis
    sampler: str = "ddim"  # ddim (paper) or ddpm
    sampler_steps: int = 50  # smoke budget; official: DDIM 200 steps
    eta: float = 1.0  # official: DDIM η = 1; no classifier-free guidance at generation (official)
    reweight: str = "texture"  # AAR: "texture" categories only (official code), "always" or "never"
    dilate_px: int = 2  # final composite: generated pixels kept on the mask dilated by this
    feather_px: int = 3  # ... and blended into the good image over this many more pixels
    seed: int = 0  # training randomness (batches, augmentation, noise, timesteps)
    progress: bool = True  # tqdm bars on stderr (also off when the run is, FitData.extra["progress"])

    def __post_init__(self) -> None:
        if self.reweight is True or self.reweight is False:  # the old boolean switch
            self.reweight = "always" if self.reweight else "never"


# The published settings (paper + official code). Only keys that differ from the smoke defaults.
PAPER = {"resolution": 256, "fit_steps": 300_000, "mask_fit_steps": 30_000, "sampler_steps": 200,
         "mask_sampler_steps": 100, "eta": 1.0, "mask_eta": 1.0}
PRESETS: dict[str, dict[str, Any]] = {"smoke": {}, "paper": PAPER}


def preset_config(config_cls: type, presets: dict[str, dict[str, Any]], overrides: dict[str, Any] | None,
                  method: str) -> Any:
    """`config_cls` from the preset named by overrides["preset"] (default "smoke"), then the overrides."""
    overrides = dict(overrides or {})
    name = overrides.get("preset", "smoke")
    if name not in presets:
        raise ConfigError(f"method {method!r} has no preset {name!r}; choose one of {', '.join(presets)}")
    names = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(f"method {method!r} has no parameter(s) {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(names))}")
    return config_cls(**{**presets[name], **overrides, "preset": name})


@register
class AnomalyDiffusion(Generator):
    """Few-shot defect generation with spatial anomaly embeddings and attention re-weighting."""

    name = "anomalydiffusion"
    Config = AnomalyDiffusionConfig
    PRESETS = PRESETS
    batch_size = 4

    @classmethod
    def make_config(cls, overrides: dict[str, Any] | None = None) -> Any:
        """Defaults of the preset `overrides["preset"]` ("smoke" or "paper"), then `overrides`."""
        return preset_config(cls.Config, cls.PRESETS, overrides, cls.name)

    def __init__(self, config: AnomalyDiffusionConfig | None = None) -> None:
        super().__init__(config)
        self.ldm: Any = None
        self.bank: Any = None
        self.spatial: Any = None
        self.injector: Any = None
        self.types: list[str] = []
        self.token_names: dict[str, list[str]] = {}
        self.few_shot_masks: dict[str, list[np.ndarray]] = {}
        self._progress = self.config.progress
        self._is_texture: bool | None = None
        self.res = self.config.resolution

    # ---- setup ---------------------------------------------------------------------------------
    def _check_config(self) -> None:
        c = self.config
        if c.mask_source not in ("textual_inversion", "synthesis"):
            raise ConfigError(f"mask_source must be textual_inversion or synthesis, not {c.mask_source!r}")
        if c.reweight not in REWEIGHT_MODES:
            raise ConfigError(f"reweight must be one of {', '.join(REWEIGHT_MODES)}, not {c.reweight!r}")
        for name in ("fit_steps", "sampler_steps", "train_batch", "anomaly_tokens", "spatial_tokens",
                     "mask_tokens", "resolution", "mask_sampler_steps"):
            if getattr(c, name) is not None and int(getattr(c, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(c, name)}")

    def _load_model(self) -> None:

        self._check_config()
        key = (self.config.base_model, self.config.device, self.config.precision)
        if self.ldm is not None and getattr(self, "_ldm_key", None) == key:
            return  # fit then load in one process (the run machinery does this): keep the model
        ldm = load_ldm(self.config.base_model, self.config.device, self.config.precision)
        step = ldm.vae_scale_factor * 2 ** (len(ldm.unet.config.block_out_channels) - 1)
        res = self.config.resolution or int(ldm.unet.config.sample_size) * ldm.vae_scale_factor
        if res % step:
            raise ConfigError(f"resolution {res} must be a multiple of {step} for {self.config.base_model}")
        self.ldm, self._ldm_key, self.res = ldm, key, res
        self.injector = EmbeddingInjector(ldm.text_encoder)

    def _make_spatial(self):
        """A spatial encoder initialised from the config's seed (the global torch RNG left alone)."""
        c = self.config
        with torch.random.fork_rng(devices=[]):  # built on the CPU, then moved
            torch.manual_seed(c.seed)
            return SpatialEncoder(c.spatial_tokens, self.ldm.text_dim, c.spatial_backbone,
                                  c.spatial_backbone_weights, c.spatial_fpn_channels).to(self.ldm.device)

    def _tokens(self, types: Sequence[str]) -> dict[str, list[str]]:

        c = self.config
        names = {SPATIAL_GROUP: [f"<spatial-{i}>" for i in range(c.spatial_tokens)]}
        for t in types:
            names[t] = placeholder_names(t, c.anomaly_tokens)
            names["mask:" + t] = [n.replace("<anomaly-", "<mask-", 1) for n in
                                  placeholder_names(t, c.mask_tokens)]
        return names

    def _register_tokens(self) -> dict[str, list[int]]:

        ids = {}
        for group, names in self.token_names.items():
            ids[group] = add_placeholder_tokens(self.ldm.tokenizer, self.ldm.text_encoder, names)
        self.token_ids = ids
        return ids

    def _overrides(self, groups: Sequence[str], spatial: torch.Tensor | None = None) -> dict[int, torch.Tensor]:
        out: dict[int, torch.Tensor] = {}
        for g in groups:
            vecs = self.bank.group(g)
            for j, tid in enumerate(self.token_ids[g]):
                out[tid] = vecs[j]
        if spatial is not None:
            for j, tid in enumerate(self.token_ids[SPATIAL_GROUP]):
                out[tid] = spatial[:, j]
        return out

    def _template(self, tokens: str, rng: np.random.Generator | None) -> str:
        if not self.config.templates:
            return tokens
        return template_prompt(tokens, rng)

    def _prompt(self, defect_type: str, rng: np.random.Generator | None = None) -> str:
        """The anomaly prompt: a training template drawn from `rng`, or the generation template."""
        return self._template(" ".join(self.token_names[defect_type] + self.token_names[SPATIAL_GROUP]), rng)

    def _mask_prompt(self, defect_type: str, rng: np.random.Generator | None = None) -> str:
        return self._template(" ".join(self.token_names["mask:" + defect_type]), rng)

    def _resized(self, img: np.ndarray, mask: bool = False) -> np.ndarray:

        return to_resolution(img, self.res, mask)

    def _texture(self) -> bool:
        """Whether the category is a texture (every good image's foreground is the whole frame)."""
        if getattr(self, "_is_texture", None) is None:
            assert self.data is not None
            goods = [self.data.image(g) for g in self.data.good[:8]]
            self._is_texture = bool(category_foregrounds(goods)[1]) if goods else False
        return bool(self._is_texture)

    def _reweight_on(self) -> bool:
        mode = self.config.reweight
        return mode == "always" or (mode == "texture" and self._texture())

    # ---- fit -----------------------------------------------------------------------------------
    def fit(self, data: FitData, state_dir: Path) -> None:
        """Learn e_a per type + the spatial encoder (masked loss), then e_m per type; save the state."""

        c = self.config
        types = [t for t in data.defect_types if data.defects[t]]
        if not types:
            raise ConfigError(f"{data.category}: no few-shot defect images with masks to fit on")
        if not data.good:
            raise ConfigError(f"{data.category}: no good training images to paint defects on")
        self._load_model()
        self.data, self.types, self._is_texture = data, types, None
        self._progress = c.progress and bool(data.extra.get("progress", True))
        self.token_names = self._tokens(types)
        self._register_tokens()
        torch_gen = torch.Generator().manual_seed(c.seed)
        rng = np.random.default_rng(c.seed)
        self.bank = TokenBank()
        for g, names in self.token_names.items():
            if g == SPATIAL_GROUP:
                continue
            word = c.init_word if not g.startswith("mask:") else c.mask_init_word
            n = len(names)
            self.bank.add_group(g, init_vectors(self.ldm.tokenizer, self.ldm.text_encoder, word, n, torch_gen), names)
        self.bank.to(self.ldm.device)
        self.spatial = self._make_spatial().train()
        sched = self.ldm.make_scheduler("ddpm")
        latent_hw = (self.res // self.ldm.vae_scale_factor,) * 2
        fit_kw = {"dtype": self.ldm.dtype, "device": self.ldm.device, "progress": self._progress}

        def draw(with_image: bool = True) -> tuple[str, np.ndarray, np.ndarray]:
            t = types[int(rng.integers(len(types)))]  # types uniformly, then an image of that type
            s = data.defects[t][int(rng.integers(len(data.defects[t])))]
            img = self._resized(data.image(s)) if with_image else None
            m = self._resized(data.mask(s), mask=True)
            if img is None:
                img = mask_to_rgb(m)
            if c.augment:
                img, m = augment_pair(img, m, rng, c.augment_p, c.max_rotation)
            return t, img, m

        def anomaly_loss(step: int) -> torch.Tensor:
            batch = [draw() for _ in range(c.train_batch)]
            lat = self.ldm.encode_images(to_model_images([b[1] for b in batch]))
            m_pix = torch.from_numpy(np.stack([b[2] > 0 for b in batch])).float()[:, None]
            e_s = self.spatial(m_pix.to(self.ldm.device))
            prompts = [self._prompt(b[0], rng) for b in batch]
            cond = encode_prompts(self.ldm.text_encoder, self.ldm.tokenizer, self.injector, prompts,
                                  self._overrides(sorted({b[0] for b in batch}), e_s), self.ldm.device)
            return masked_diffusion_loss(self.ldm, sched, lat, cond, loss_mask_to_latent(m_pix, latent_hw),
                                         torch_gen)

        params = [self.bank.group(t) for t in types] + list(self.spatial.parameters())
        self.losses = {"anomaly": train_params(params, anomaly_loss, c.fit_steps, c.lr,
                                               desc=f"{self.name} fit e_a+E", **fit_kw)}
        if c.mask_source == "textual_inversion":
            def mask_loss(step: int) -> torch.Tensor:
                batch = [draw(with_image=False) for _ in range(c.train_batch)]
                lat = self.ldm.encode_images(to_model_images([mask_to_rgb(b[2]) for b in batch]))
                prompts = [self._mask_prompt(b[0], rng) for b in batch]
                cond = encode_prompts(self.ldm.text_encoder, self.ldm.tokenizer, self.injector, prompts,
                                      self._overrides(sorted({"mask:" + b[0] for b in batch})), self.ldm.device)
                return masked_diffusion_loss(self.ldm, sched, lat, cond, None, torch_gen)

            steps = c.mask_fit_steps if c.mask_fit_steps is not None else c.fit_steps
            self.losses["mask"] = train_params([self.bank.group("mask:" + t) for t in types], mask_loss,
                                               steps, c.lr, desc=f"{self.name} fit e_m", **fit_kw)
        self.spatial.eval()
        self._collect_masks()
        self._save(Path(state_dir))

    def _collect_masks(self) -> None:
        assert self.data is not None  # set by fit()/load() before this is called
        self.few_shot_masks = {t: [self._resized(self.data.mask(s), mask=True) for s in self.data.defects[t]]
                               for t in self.types}

    def _save(self, state_dir: Path) -> None:
        assert self.data is not None  # set by fit()/load() before this is called

        state_dir.mkdir(parents=True, exist_ok=True)
        self.bank.save(state_dir / EMB_FILE)
        weights = {k: v.detach().float().cpu().contiguous() for k, v in self.spatial.state_dict().items()}
        write_bytes_atomic(state_dir / ENC_FILE, safetensors_bytes(weights))
        meta = {"method": self.name, "category": self.data.category, "defect_types": self.types,
                "token_names": self.token_names, "text_dim": self.ldm.text_dim,
                "config": dataclasses.asdict(self.config),
                "final_loss": {k: (v[-1] if v else None) for k, v in self.losses.items()}}
        write_state_meta(state_dir / STATE_FILE, meta)

    # ---- load ----------------------------------------------------------------------------------
    def load(self, data: FitData, state_dir: Path) -> None:
        """Restore embeddings and spatial encoder saved by `fit`; the state must be this category's."""


        state_dir = Path(state_dir)
        meta_path = state_dir / STATE_FILE
        meta = read_state_meta(meta_path, self.name, data.category, self.config,
                               ("anomaly_tokens", "spatial_tokens", "mask_tokens", "spatial_backbone",
                                "spatial_fpn_channels", "resolution"))
        self._load_model()
        if meta.get("text_dim") != self.ldm.text_dim:
            raise ConfigError(f"{meta_path}: fitted on a text encoder of width {meta.get('text_dim')}, "
                              f"but {self.config.base_model} has {self.ldm.text_dim}")
        self.data, self._is_texture = data, None
        self._progress = self.config.progress and bool(data.extra.get("progress", True))
        self.types = list(meta["defect_types"])
        self.token_names = {k: list(v) for k, v in meta["token_names"].items()}
        self._register_tokens()
        self.bank = TokenBank.load(state_dir / EMB_FILE).to(self.ldm.device)
        self.spatial = self._make_spatial()
        enc_path = state_dir / ENC_FILE
        if not enc_path.is_file():
            raise ConfigError(f"{enc_path}: spatial encoder weights missing (re-run fit)")
        try:
            self.spatial.load_state_dict(load_file(str(enc_path)))
        except RuntimeError:
            raise ConfigError(f"{enc_path}: spatial encoder weights of another architecture (fitted with an "
                              f"older anomalyforge?); re-run fit") from None
        self.spatial.eval()
        missing = [t for t in self.types if not data.defects.get(t)]
        if missing:
            raise ConfigError(f"{state_dir}: defect type(s) {', '.join(missing)} have no few-shot masks in "
                              f"the data given to load")
        self._collect_masks()

    # ---- generate ------------------------------------------------------------------------------
    def _seed_generator(self, seed: int, stream: int) -> torch.Generator:

        return torch_generator(seed, stream)

    def _masks_for(self, defect_type: str, seeds: Sequence[int]) -> tuple[list[np.ndarray], list[str]]:
        """One mask per seed (see mask_source); returns masks at `resolution` and how each was made."""

        c = self.config
        masks: list[np.ndarray | None] = [None] * len(seeds)
        how = ["synthesis"] * len(seeds)
        if c.mask_source == "textual_inversion":
            gens = [self._seed_generator(s, Stream.MASK_NOISE) for s in seeds]
            todo = list(range(len(seeds)))
            for _ in range(c.mask_tries):
                if not todo:
                    break
                with torch.no_grad():
                    cond = encode_prompts(self.ldm.text_encoder, self.ldm.tokenizer, self.injector,
                                          [self._mask_prompt(defect_type)] * len(todo),
                                          self._overrides(["mask:" + defect_type]), self.ldm.device)
                    uncond = encode_prompts(self.ldm.text_encoder, self.ldm.tokenizer, self.injector,
                                            [""] * len(todo), {}, self.ldm.device)
                got = sample_masks(self.ldm, cond, uncond, [gens[i] for i in todo], self.res,
                                   c.mask_sampler_steps or c.sampler_steps, c.mask_guidance, c.sampler,
                                   c.mask_threshold, c.mask_eta)
                left = []
                for i, m in zip(todo, got, strict=False):
                    if acceptable(m, c.mask_max_area, border_share=c.mask_border_share):
                        masks[i], how[i] = m, "textual_inversion"
                    else:
                        left.append(i)
                todo = left
        for i, s in enumerate(seeds):
            if masks[i] is None:
                rng = numpy_rng(s, Stream.MASK)
                masks[i] = synthesize_mask(self.few_shot_masks[defect_type], rng)
        return [m for m in masks if m is not None], how

    def generate(self, defect_type: str, seeds: Sequence[int]) -> list[Pair]:
        """One pair per seed: mask, good image, blended sampling with re-weighting, composite."""

        if self.ldm is None or self.data is None:
            raise ConfigError(f"{self.name}: call fit or load before generate")
        if defect_type not in self.types:
            raise ConfigError(f"defect type {defect_type!r} was not fitted; fitted: {', '.join(self.types)}")
        if not seeds:
            return []
        c, data, ldm = self.config, self.data, self.ldm
        masks, how = self._masks_for(defect_type, seeds)
        goods = [data.good[int(numpy_rng(s, Stream.GOOD_IMAGE).integers(len(data.good)))] for s in seeds]
        y_img = [self._resized(data.image(g)) for g in goods]
        y = to_model_images(y_img)
        y0 = ldm.encode_images(y)
        m_pix = torch.from_numpy(np.stack([m > 0 for m in masks])).float()[:, None]
        m_lat = mask_to_latent(m_pix, tuple(y0.shape[-2:]))
        gens = [self._seed_generator(s, Stream.NOISE) for s in seeds]
        prompt = self._prompt(defect_type)
        with torch.no_grad():
            e_s = self.spatial(m_pix.to(ldm.device))
            cond = encode_prompts(ldm.text_encoder, ldm.tokenizer, self.injector, [prompt] * len(seeds),
                                  self._overrides([defect_type], e_s), ldm.device)
        controller = AttentionController(token_positions=token_positions(ldm.tokenizer, prompt,
                                                                         self.token_names[defect_type]))
        reweight = self._reweight_on()
        schedule = blend_mask_schedule(m_lat, int(ldm.scheduler_config.get("num_train_timesteps", 1000))) \
            if reweight else None
        before_step = make_reweight_hook(controller, y0, schedule) if reweight else None
        previous = install_processors(ldm.unet, controller) if reweight else None
        try:
            lat = blended_sample(ldm, cond, y0, m_lat, gens, steps=c.sampler_steps, sampler=c.sampler,
                                 before_step=before_step, progress=self._progress, eta=c.eta,
                                 mask_schedule=schedule)
            with torch.no_grad():
                decoded = from_model_images(ldm.decode_latents(lat))
        finally:
            if previous is not None:
                ldm.unet.set_attn_processor(previous)
        pairs = []
        size = data.size
        scale = size / self.res
        for i, seed in enumerate(seeds):
            good = data.image(goods[i])
            gen_img, mask = decoded[i], masks[i]
            if size != self.res:
                gen_img = cv2.resize(gen_img, (size, size), interpolation=cv2.INTER_CUBIC)
                mask = np.where(cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST) > 0, 255, 0
                                ).astype(np.uint8)
            alpha = feather_mask(mask, max(0, round(c.dilate_px * scale)), max(0, round(c.feather_px * scale)))
            image = composite(np.asarray(good), gen_img, alpha)
            pairs.append(Pair(image=image, mask=mask, source=str(goods[i].image),
                              params={"seed": int(seed), "mask_from": how[i], "sampler": c.sampler,
                                      "sampler_steps": c.sampler_steps, "eta": c.eta, "reweight": reweight}))
        return pairs
