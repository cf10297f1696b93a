"""Benchmark profiles: every size, schedule and model choice of one benchmark run in one place.

A profile is fixed before the test split is read; nothing in it is chosen by a test score.
`smoke` is for tests (seconds), `cpu` fits a 2-core machine (<= 20 min per method, <= 4 GB),
`paper` follows the published downstream protocol (256 px, DRAEM U-Net, 200 epochs) for a GPU.
`auto` is `cpu` with the fusion weight, the classifier's real share (and, for the method label
`auto`, the generator) chosen per category on training folds by `pipelines.select` before the
test split is read, and the input size chosen from the few-shot defects' sizes
(`inspect.resolution`: 256, 384 or 512); settings given with `--set` are kept (their names are
stored in `extra["fixed"]`).

Under `cpu` and `auto` the defect-type classifier's input (`cls_input`: the whole image, the
region the map marks, or both averaged) is chosen per category on the k-fold training maps
(`inspect.classifier_choice`).

The `cpu` defaults come from training data only (few-shot folds, never the test split):
`cls_real_share` 0.5 by `benchmarks/bench_classifier_mix.py` (bottle and Magnetic Tile); the
fusion weight 0.6 from a bottle sweep whose scripts were never committed (a record, not
reproducible: `benchmarks/records/cpu_profile.md`). `benchmarks/bench_select.py` runs the
reproducible per-category fold search of `auto` (fusion grid 0, 0.3, 0.6, 0.8, 1) on any category.
Their k-fold refits (the thresholds' and the classifier choice's maps) train 500 steps, half the
final model's 1000: on the training folds of bottle and Magnetic Tile that moved the pixel
threshold by at most 0.002, its F1 on the 1000-step fold maps by under 0.01 points, and left the
classifier choice unchanged (`benchmarks/bench_fold_schedule.py`; docs/results.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from anomalyforge.errors import ConfigError
from anomalyforge.features.backbone import DEFAULT_ARCH, _lite_weights_path
from anomalyforge.formats.backbone import BackboneInfo, resolve_backbone
from anomalyforge.formats.model import sha256_file
from anomalyforge.inspect.resolution import LADDER, SizeChoice, size_for_defects

LOCALIZERS = ("feature_head", "lite_unet", "draem_unet")
CLASSIFIERS = ("efficientnet-lite0", "resnet34")
CLS_INPUTS = ("image", "region", "ensemble", "choose")


@dataclass(frozen=True)
class Profile:
    """All settings of one benchmark run (saved into results.json as `config`)."""

    name: str
    size: int = 256  # image side for training and evaluation
    # non-empty: `size` is chosen from these by the few-shot defects' sizes (inspect.resolution), before
    # the test split is read; under `auto`, a `--set size=...` keeps the size given
    size_ladder: tuple[int, ...] = ()
    n_per_type: int = 500  # generated pairs per defect type
    # localisation
    localizer: str = "feature_head"
    levels: tuple[int, ...] = (1, 2, 3)  # backbone stride levels for feature_head
    head_width: int = 64
    steps: int = 1000  # optimiser steps (used when epochs == 0)
    epochs: int = 0  # > 0: epoch schedule over the generated pairs (paper)
    # optimiser steps of each k-fold refit (inspect.kfold; when epochs == 0); 0: `steps`
    fold_steps: int = 0
    batch_size: int = 16
    good_fraction: float = 0.5  # share of good training images in each batch
    lr: float = 1e-3
    encoder_lr: float = 1e-4  # lite_unet: fine-tuning rate of the pretrained encoder
    lr_milestones: tuple[float, ...] = (0.8, 0.9)  # fractions of the schedule
    lr_gamma: float = 0.2
    loss: str = "focal+dice"  # "focal", "bce", "focal+dice", "bce+dice"
    focal_gamma: float = 2.0
    augment: bool = True  # seeded flips / 90-degree rotations, image and mask together
    tta: bool = False  # test-time flip averaging of the defect map
    fusion: float = 0.0  # > 0: weight of a PatchCore map fused with the supervised map (train.FusedLocalizer)
    fusion_holdout: float = 0.1  # share of good training images held out to standardise the fused maps
    score_pool: int | None = None  # image score = max of the pool x pool averaged map (None: 16 px at 256)
    # classification
    classifier: str = "efficientnet-lite0"
    cls_size: int = 224
    cls_steps: int = 200
    cls_batch_size: int = 16
    cls_lr: float = 3e-4
    cls_finetune_from: int = 4  # EfficientNet-Lite: levels >= this are fine-tuned, earlier ones frozen
    cls_real_share: float = 0.5  # share of the synthetic methods' classifier draws taken from the
    # real few-shot defects (the baseline's classifier sees only them); 0 = generated only, as the papers
    # what the classifier looks at: "image" (fine-tuned on whole images), "region" (the region the
    # localiser's map marks; inspect.region_classify), "ensemble" (the two averaged;
    # inspect.ensemble_classify) or "choose" (the best of those on k-fold training maps)
    cls_input: str = "image"
    # generation quality of each method's pairs (IS, IC-LPIPS; anomalyforge.quality.generation)
    quality: bool = True
    # PatchCore baseline
    pc_levels: tuple[int, ...] = (2, 3)
    pc_coreset: float = 0.1  # bank = this fraction of all patches ...
    pc_max_bank: int = 10000  # ... at most this many (greedy selection time grows with it)
    pc_candidates: int = 100000  # greedy selection runs on a seeded random subsample of this size
    pc_projection: int = 64
    pc_sigma: float = 4.0
    # pretrained weights of every backbone above (localiser, classifier, PatchCore): "imagenet" (the
    # offline EfficientNet-Lite0 weights) or a BACKBONE/ folder from `anomalyforge pretrain-backbone` (TAB)
    backbone: str = "imagenet"
    # runtime
    num_workers: int = 0
    device: str | None = None  # None: CUDA when available
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        if d["backbone"] == "imagenet":  # the default is left out: results written before it still resume
            del d["backbone"]
        if not d["size_ladder"]:  # likewise
            del d["size_ladder"]
        if d["cls_input"] == "image":  # likewise
            del d["cls_input"]
        if not d["fold_steps"]:  # likewise
            del d["fold_steps"]
        return d


PROFILES: dict[str, Profile] = {
    "smoke": Profile(name="smoke", size=64, n_per_type=6, head_width=16, steps=4, batch_size=4,
                     cls_size=64, cls_steps=3, cls_batch_size=4,
                     pc_projection=32, pc_max_bank=500, pc_candidates=5000),
    # fusion weight chosen on training-only validation (above); the classifier's input on k-fold training maps
    # k-fold refits of 500 steps: the same thresholds and classifier choice as 1000 on training folds
    # (benchmarks/bench_fold_schedule.py, bottle and Magnetic Tile)
    "cpu": Profile(name="cpu", fusion=0.6, cls_input="choose", fold_steps=500),
    # cpu; fusion / cls_real_share chosen per category (pipelines.select), size by the defects' sizes
    "auto": Profile(name="auto", fusion=0.6, cls_input="choose", fold_steps=500, size_ladder=LADDER),
    "paper": Profile(name="paper", size=256, n_per_type=1000, localizer="draem_unet", steps=0,
                     epochs=200, batch_size=8, lr=1e-4, loss="focal", cls_size=256,
                     cls_steps=3000, classifier="resnet34", cls_finetune_from=0, cls_real_share=0.0),
}


def _coerce(f: dataclasses.Field, value):
    """An override checked against the field's annotation (lists become tuples for tuple fields)."""
    ann = str(f.type)
    if value is None and "None" in ann:
        return None
    kinds: dict[str, type | tuple[type, ...]] = {"bool": bool, "int": int, "float": (int, float), "str": str,
                                                 "tuple": (list, tuple), "dict": dict}
    kind = ann.split("[")[0].split("|")[0].strip()
    want = kinds.get(kind)
    ok = want is None or (isinstance(value, want) and not (kind in ("int", "float") and isinstance(value, bool)))
    if not ok:
        raise ConfigError(f"profile setting {f.name}={value!r}: expected {ann}")
    if kind == "tuple":
        return tuple(value)
    return float(value) if kind == "float" else value


def get_profile(name: str | Profile, **overrides) -> Profile:
    """The named profile (with optional field overrides); unknown name -> ConfigError listing them."""
    if isinstance(name, Profile):
        prof = name
    else:
        try:
            prof = PROFILES[name]
        except KeyError:
            raise ConfigError(f"unknown profile {name!r}; available: {', '.join(PROFILES)}") from None
    if overrides:
        fields = {f.name: f for f in dataclasses.fields(Profile)}
        bad = sorted(set(overrides) - set(fields))
        if bad:
            raise ConfigError(f"profile has no setting(s) {', '.join(bad)}")
        prof = dataclasses.replace(prof, **{k: _coerce(fields[k], v) for k, v in overrides.items()})
        if prof.name == "auto":  # what the user fixed is not chosen by the selection
            fixed = sorted(set(prof.extra.get("fixed") or []) | (set(overrides) - {"extra"}))
            prof = dataclasses.replace(prof, extra={**prof.extra, "fixed": fixed})
    if prof.localizer not in LOCALIZERS:
        raise ConfigError(f"unknown localisation model {prof.localizer!r}; available: {', '.join(LOCALIZERS)}")
    if prof.backbone != "imagenet" and not Path(prof.backbone).is_dir():
        raise ConfigError(f"backbone={prof.backbone}: not 'imagenet' nor a backbone folder "
                          "(make one with `anomalyforge pretrain-backbone`)")
    if prof.classifier not in CLASSIFIERS:
        raise ConfigError(f"unknown classifier {prof.classifier!r}; available: {', '.join(CLASSIFIERS)}")
    if prof.cls_input not in CLS_INPUTS:
        raise ConfigError(f"unknown cls_input {prof.cls_input!r}; available: {', '.join(CLS_INPUTS)}")
    return prof


def with_chosen_size(prof: Profile, masks: Iterable[np.ndarray]) -> tuple[Profile, SizeChoice | None]:
    """`prof` with its `size` chosen from `size_ladder` by the few-shot defect `masks`
    (`inspect.resolution.size_for_defects`), and the choice; `prof` unchanged and None when it has no
    ladder or its size was fixed with `--set`."""
    if not prof.size_ladder or "size" in (prof.extra.get("fixed") or []):
        return prof, None
    choice = size_for_defects(masks, prof.size_ladder)
    return dataclasses.replace(prof, size=choice.size), choice


def backbone_weights(prof: Profile) -> str:
    """The `weights` every backbone of this profile loads: "imagenet" (the offline EfficientNet-Lite0
    weights), or the verified weights file of its TAB backbone folder (DataError naming the file when
    unfinished or altered)."""
    if prof.backbone == "imagenet":
        return "imagenet"
    return resolve_backbone(prof.backbone)[0]


FROM_PROFILE = "profile"  # the default `weights` of the training functions: the profile's backbone


def weights_for(prof: Profile, weights: str | None) -> str | None:
    """`weights` as given (a file, "imagenet", or None = random for tests), or the profile's own
    backbone weights for FROM_PROFILE, so a model trained anywhere (k-fold refits, selection folds)
    uses the backbone the profile names."""
    return backbone_weights(prof) if weights == FROM_PROFILE else weights


def backbone_arch(prof: Profile) -> str:
    """The architecture of the profile's localiser / PatchCore backbone: EfficientNet-Lite0 with the
    ImageNet weights, else the TAB folder's own (e.g. "resnet18"), so any pretrained encoder plugs in."""
    if prof.backbone == "imagenet":
        return DEFAULT_ARCH
    return BackboneInfo.read(prof.backbone).arch


def classifier_network(classifier: str, tab_arch: str | None) -> str:
    """The one rule for the classifier's network: `classifier` (a profile's) with ImageNet weights;
    with a TAB backbone, that backbone's architecture `tab_arch` (its weights are what the classifier
    starts from). A loaded model applies it to what its model.json records."""
    return classifier if tab_arch is None else tab_arch


def classifier_arch(prof: Profile) -> str:
    """`classifier_network` of a profile: its `classifier`, or its TAB backbone folder's architecture."""
    return classifier_network(prof.classifier, None if prof.backbone == "imagenet" else backbone_arch(prof))


def backbone_identity(prof: Profile) -> dict:
    """The identity of the profile's backbone weights (results.json, model.json): name, weights,
    file and sha256 (the offline ImageNet file's, or the TAB folder's with its text encoder)."""
    if prof.backbone != "imagenet":
        return resolve_backbone(prof.backbone)[1]
    name = DEFAULT_ARCH
    try:
        path = Path(_lite_weights_path("lite0"))
        return {"name": name, "weights": "imagenet", "weights_file": path.name, "sha256": sha256_file(path)}
    except (ConfigError, OSError):
        return {"name": name, "weights": "imagenet", "weights_file": None, "sha256": None}
