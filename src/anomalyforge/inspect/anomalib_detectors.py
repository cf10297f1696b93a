"""anomalib's unsupervised detectors (PatchCore, PaDiM, CFlow, FastFlow, STFPM) on an offline backbone.

The models are anomalib's own (`anomalib.models`): their torch modules, their `training_step`s
and optimisers, run by a bare Lightning `Trainer` (no `Engine`: no checkpoints, loggers,
metrics or visualisation, which cost more than the fit at few-shot scale). Only the backbone is
ours: anomalib's ImageNet ResNets cannot be downloaded here, so every model gets the offline
ImageNet EfficientNet-Lite0 (`anomalyforge.features.backbone.stage_network`) through anomalib's
`TimmFeatureExtractor`, which accepts an `nn.Module`:

- PatchCore, PaDiM, CFlow: the backbone is passed as the model's `backbone` argument.
- STFPM: the teacher is the pretrained backbone; the student is the same architecture with
  random weights (anomalib builds its student with `pre_trained=False`; a shared `nn.Module`
  would make teacher and student one network, so the student is replaced by a fresh one).
- FastFlow: anomalib accepts only four backbone names; the model is built with a random
  ResNet-18 (no download) and its extractor, LayerNorms and flow blocks are rebuilt for the
  backbone's channels with anomalib's own `create_fast_flow_block`, as its `__init__` does.

Not available offline (`UNAVAILABLE`, with the one-line reason): Reverse Distillation (anomalib's
decoder and bottleneck mirror a ResNet encoder) and EfficientAD (a pretrained PDN teacher and
Imagenette, both downloaded). Images are uint8 (N, S, S, 3); they are scaled to [0, 1] and
ImageNet-normalised as anomalib's `PreProcessor` does, at the size given. Every random choice
(initial weights, PatchCore's random projection and start point, PaDiM's feature subset, batch
order) comes from the seed stream `Stream.DETECTOR`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from anomalyforge.errors import ConfigError
from anomalyforge.features.backbone import IMAGENET_MEAN, IMAGENET_STD, BackboneSpec, stage_network, to_tensor
from anomalyforge.seeds import Stream, torch_generator

DETECTORS = ("patchcore", "padim", "cflow", "fastflow", "stfpm")
UNAVAILABLE = {
    "reverse_distillation": "anomalib's decoder and bottleneck mirror a ResNet encoder, and no ImageNet "
                            "ResNet weights are available offline",
    "efficient_ad": "needs anomalib's pretrained PDN teacher and the Imagenette images, both downloaded",
}
_LEVELS = {"patchcore": (2, 3), "padim": (1, 2, 3), "cflow": (1, 2, 3), "fastflow": (1, 2, 3), "stfpm": (1, 2, 3)}
EVAL_BATCH = 32  # anomalib's default evaluation batch size
_TRAINED = frozenset({"cflow", "fastflow", "stfpm"})  # gradient training; the others fit in one pass


def check_detectors(names: list[str] | tuple[str, ...], extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    """`names` de-duplicated, each one of `DETECTORS` (or `extra`); otherwise one ConfigError line
    that lists the choices and says why an unavailable anomalib model is skipped."""
    out = tuple(dict.fromkeys(n.strip().lower() for n in names if n.strip()))
    if not out:
        raise ConfigError("no detector given; choose from " + ", ".join(extra + DETECTORS))
    for n in out:
        if n in UNAVAILABLE:
            raise ConfigError(f"detector {n!r} is not available offline: {UNAVAILABLE[n]}")
        if n not in DETECTORS and n not in extra:
            raise ConfigError(f"unknown detector {n!r}; choose from {', '.join(extra + DETECTORS)}")
    return out


@dataclass(frozen=True)
class DetectorConfig:
    """Settings of one anomalib detector run (anomalib's defaults unless stated).

    `epochs` applies to the trained models (CFlow, FastFlow, STFPM); PatchCore and PaDiM fit in
    one pass. `steps`, when set, replaces `epochs`: about that many training batches whatever the
    number of images (whole epochs, ceil(steps / batches per epoch)), so a model fitted on 1 image
    and one fitted on 33 train equally long (with `epochs`, one image is one batch per epoch).
    Batches, not optimiser steps: CFlow steps its optimiser once per fiber batch. `coreset` is PatchCore's coreset
    sampling ratio; `padim_features` PaDiM's random feature subset (anomalib has defaults only for
    its ResNets: 100 of 176 here)."""

    size: int = 256
    epochs: int = 3
    steps: int | None = None
    batch_size: int = 8
    coreset: float = 0.1
    padim_features: int = 100
    backbone: str = "efficientnet-lite0"
    weights: str | None = "imagenet"
    device: str = "cpu"

    def __post_init__(self) -> None:
        if (self.size < 32 or self.epochs < 1 or self.batch_size < 1 or not 0 < self.coreset <= 1
                or (self.steps is not None and self.steps < 1)):
            raise ConfigError(f"detector settings out of range: {self}")

    def to_dict(self) -> dict:
        return asdict(self)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block with torch's and numpy's global generators seeded from (seed, DETECTOR), and
    put both back afterwards (anomalib draws initial weights, PaDiM's feature subset and
    PatchCore's sparse random projection from the global generators)."""
    s = torch_generator(seed, Stream.DETECTOR).initial_seed()
    state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(s)
        np.random.seed(s % 2**32)
        try:
            yield
        finally:
            np.random.set_state(state)


@contextlib.contextmanager
def _quiet(progress: bool) -> Iterator[None]:
    """Silence Lightning's banners and warnings (and anomalib's coreset bar unless `progress`)."""
    loggers = [logging.getLogger(n) for n in ("lightning", "lightning.pytorch", "lightning.fabric", "anomalib")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if progress:
                yield
            else:
                with contextlib.redirect_stderr(io.StringIO()):
                    yield
    finally:
        for lg, lv in zip(loggers, levels, strict=True):
            lg.setLevel(lv)


def _fastflow(net: nn.Module, layers: list[str], size: int) -> Any:
    """anomalib's FastFlow with `net` as its feature extractor (see the module docstring)."""
    from anomalib.models import Fastflow  # lazy: anomalib is heavy to import
    from anomalib.models.components import TimmFeatureExtractor  # lazy: anomalib
    from anomalib.models.image.fastflow.torch_model import create_fast_flow_block  # lazy: anomalib
    from anomalib.pre_processing import PreProcessor  # lazy: anomalib
    from torchvision.transforms.v2 import Resize  # lazy: torchvision

    # FastFlow reads its input size from the pre-processor; ours only states the size (images
    # arrive at it, normalised), and is dropped once the model is built
    sized = PreProcessor(transform=Resize((size, size)))
    module = Fastflow(backbone="resnet18", pre_trained=False, pre_processor=sized, post_processor=False,
                      evaluator=False, visualizer=False)
    module.pre_processor = None
    model = module.model
    fx = TimmFeatureExtractor(net, layers)

    class _AsList(nn.Module):  # FastFlow's CNN path takes a list of maps, as timm's features_only gives
        def __init__(self) -> None:
            super().__init__()
            self.fx = fx

        def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
            f = self.fx(x)
            return [f[k] for k in layers]

    with torch.no_grad():
        shapes = [t.shape[1:] for t in _AsList()(torch.zeros(1, 3, size, size))]
    model.feature_extractor = _AsList()
    for p in model.feature_extractor.parameters():
        p.requires_grad = False
    model.norms = nn.ModuleList([nn.LayerNorm(list(s), elementwise_affine=True) for s in shapes])
    model.fast_flow_blocks = nn.ModuleList([
        create_fast_flow_block(input_dimensions=list(s), conv3x3_only=False, hidden_ratio=1.0, flow_steps=8)
        for s in shapes])
    return module


def build_module(name: str, cfg: DetectorConfig) -> Any:
    """The anomalib Lightning module `name` on `cfg.backbone` (pre/post-processing, evaluator and
    visualiser off: images come normalised, scores are used raw). Call inside `seeded`."""
    from anomalib import models  # lazy: anomalib is heavy to import
    from anomalib.models.components import TimmFeatureExtractor  # lazy: anomalib

    (name,) = check_detectors([name])
    spec = BackboneSpec(cfg.backbone, cfg.weights, _LEVELS[name])
    net: Any  # anomalib types `backbone` as a name; its TimmFeatureExtractor takes an nn.Module too
    net, layers = stage_network(spec)
    off: dict[str, Any] = {"pre_processor": False, "post_processor": False, "evaluator": False, "visualizer": False}
    if name == "patchcore":
        return models.Patchcore(backbone=net, layers=layers, coreset_sampling_ratio=cfg.coreset, **off)
    if name == "padim":
        n_feat = min(cfg.padim_features, sum(net.channels[lv] for lv in spec.levels))
        return models.Padim(backbone=net, layers=layers, n_features=n_feat, **off)
    if name == "cflow":
        # anomalib's fiber batch (64) needs that many positions at the coarsest level in every
        # batch, a one-image last batch included: smaller only below 128 px
        return models.Cflow(backbone=net, layers=layers, fiber_batch_size=min(64, (cfg.size // 16) ** 2), **off)
    if name == "stfpm":
        module = models.Stfpm(backbone=net, layers=layers, **off)
        student, _ = stage_network(BackboneSpec(cfg.backbone, None, spec.levels))
        module.model.student_model = TimmFeatureExtractor(student, layers, requires_grad=True)
        return module
    return _fastflow(net, layers, cfg.size)


def normalise(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> ImageNet-normalised float (N, 3, H, W), as anomalib's PreProcessor."""
    x = to_tensor(images)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


class AnomalibDetector:
    """One anomalib detector: `fit` on good images, `predict` anomaly maps and image scores."""

    def __init__(self, name: str, config: DetectorConfig | None = None, seed: int = 0) -> None:
        (self.name,) = check_detectors([name])
        self.config = config or DetectorConfig()
        self.seed = int(seed)
        self.module: Any = None

    def fit(self, images: np.ndarray, progress: bool = False) -> AnomalibDetector:
        """Train on good images (N, S, S, 3) uint8 with anomalib's training step (one pass for
        PatchCore / PaDiM, `epochs` epochs or about `steps` batches for the others)."""
        import lightning.pytorch as pl  # lazy: lightning is heavy to import
        from anomalib.data import ImageBatch  # lazy: anomalib

        images = np.asarray(images)
        if images.ndim != 4 or len(images) == 0:
            raise ConfigError(f"detector {self.name} needs (N>0, H, W, 3) good images, got shape {images.shape}")
        cfg = self.config
        x = normalise(images)
        n_batches = -(-len(x) // cfg.batch_size)
        with seeded(self.seed), _quiet(progress):
            module = build_module(self.name, cfg)
            loader = torch.utils.data.DataLoader(
                torch.utils.data.TensorDataset(x), batch_size=cfg.batch_size, shuffle=self.name in _TRAINED,
                generator=torch_generator(self.seed, Stream.DETECTOR),
                collate_fn=lambda xs: ImageBatch(image=torch.stack([t[0] for t in xs])))
            trained = self.name in _TRAINED
            epochs = (-(-cfg.steps // n_batches) if cfg.steps is not None else cfg.epochs) if trained else 1
            trainer = pl.Trainer(max_epochs=epochs, accelerator=cfg.device,
                                 devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=progress,
                                 enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
                                 log_every_n_steps=max(1, n_batches), gradient_clip_val=0)
            trainer.fit(module, train_dataloaders=loader)
        self.module = module.eval()
        return self

    @torch.no_grad()
    def predict(self, images: np.ndarray, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(N, S, S, 3) uint8 -> anomaly maps (N, S, S) float32 and image scores (N,) float64, raw
        (anomalib's torch model output, before its post-processor's normalisation)."""
        del progress
        if self.module is None:
            raise ConfigError(f"detector {self.name}: predict called before fit")
        model = self.module.model.eval()
        dev = torch.device(self.config.device)
        batch = self.config.batch_size
        if self.name == "cflow":
            # CFlow normalises its maps by the maximum over the batch it is given: scored in
            # batches of anomalib's default evaluation batch size (32). Its fibers are decoded
            # independently, so a larger inference chunk changes only the speed.
            batch, model.fiber_batch_size = EVAL_BATCH, 16384
        maps, scores = [], []
        for i in range(0, len(images), batch):
            out = model(normalise(images[i:i + batch]).to(dev))
            maps.append(out.anomaly_map.reshape(-1, *out.anomaly_map.shape[-2:]).float().cpu().numpy())
            scores.append(out.pred_score.reshape(-1).double().cpu().numpy())
        return np.concatenate(maps).astype(np.float32), np.concatenate(scores)
