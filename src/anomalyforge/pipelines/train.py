"""Train the model that goes on the line: exactly what `benchmark` trains for a synthetic method.

`train_model(data, out, method)` reads the few-shot split, generates (or reuses, `run=`) the method's
pairs, trains the profile's localiser (fused with PatchCore when the profile's `fusion` > 0) and the
defect-type classifier with `train_inspection` -- the function the benchmark calls too, so the
benchmarked model is the delivered model -- on the training split only, chooses the decision
thresholds on TRAINING data only (`pipelines.thresholds`: held-out good images for the image
threshold, k-fold held-out real defects for the pixel one), and writes the model folder:
`model.json` (`formats.model.ModelInfo`) and `weights.safetensors`. No test image is ever read.

`load_model(folder)` gives it back as a `TorchModel` (what `predict` runs with PyTorch).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from anomalyforge import __version__
from anomalyforge.atomic import check_output_dir, first_missing, remove_created
from anomalyforge.data import few_shot_split, fit_data, load_dataset, train_masks
from anomalyforge.data.fitdata import FitData
from anomalyforge.errors import ConfigError, DataError
from anomalyforge.features.backbone import DEFAULT_ARCH, pick_device
from anomalyforge.formats.manifest import read_pairs
from anomalyforge.formats.model import MODEL_JSON, ModelInfo, Thresholds, read_weights, write_weights
from anomalyforge.formats.run import RUN_JSON, RunInfo, check_complete, check_training
from anomalyforge.inspect.banks import BankCache
from anomalyforge.inspect.classifier_choice import Candidate, choose_classifier
from anomalyforge.inspect.classify import DefectClassifier, build_classifier, train_classifier
from anomalyforge.inspect.ensemble_classify import EnsembleDefectClassifier
from anomalyforge.inspect.models import build_localizer
from anomalyforge.inspect.pairs import GeneratedPairs
from anomalyforge.inspect.patchcore import PatchCore
from anomalyforge.inspect.profiles import (
    PROFILES,
    Profile,
    backbone_identity,
    backbone_weights,
    classifier_network,
    get_profile,
    with_chosen_size,
)
from anomalyforge.inspect.region_classify import RegionClassifier, RegionDefectClassifier
from anomalyforge.inspect.train import (
    FusedLocalizer,
    Localizer,
    MapPredictor,
    good_images,
    holdout_goods,
    train_localizer,
)
from anomalyforge.metrics import image_scores_from_maps
from anomalyforge.metrics.pooling import default_pool
from anomalyforge.pipelines.thresholds import DEFAULT_FPR, fit_thresholds
from anomalyforge.report.figures import good_scale
from anomalyforge.synth.base import available
from anomalyforge.synth.run import generate_run


def _trained_on(chosen: str, image_text: str) -> str:
    """What the classifier chosen on the k-fold maps learnt from (`image_text`: the whole-image one's)."""
    region = "real few-shot defects, each in the region its k-fold map marks"
    return {"image": image_text, "region": region,
            "ensemble": f"whole image: {image_text}; region: {region}; averaged"}[chosen]


@dataclass
class InspectionModel:
    """A trained localiser and (with two or more defect types) classifier, as the benchmark scores them."""

    localizer: MapPredictor
    classifier: Candidate | None
    trained_on: str  # what the classifier learnt from
    cls_input: str = "image"  # what it looks at: the whole image, the region its map marks, or both
    cls_choice: dict | None = None  # how that was chosen (inspect.classifier_choice)
    # every classifier the choice built, by name (not saved): what the others would have done on test
    cls_candidates: dict[str, Candidate] = field(default_factory=dict, repr=False)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per training stage


def train_inspection(fit: FitData, pairs: GeneratedPairs, prof: Profile, seed: int = 0,
                     progress: bool = True, real: GeneratedPairs | None = None,
                     banks: BankCache | None = None) -> InspectionModel:
    """The localiser and classifier of a synthetic method, on the training split only.

    `fit` is the whole few-shot training view; a fused localiser holds its seeded share of good
    images out itself, any other is trained without that same share (`holdout_goods`), so the
    held-out goods (heat-map scale, thresholds) are never trained on. `real`: the real few-shot
    defects as pairs when the caller has them already (None: read from `fit` if needed). `banks`: a
    cache for the fused localiser's PatchCore (`inspect.banks`)."""
    train_fit, _ = holdout_goods(fit, prof.fusion_holdout, seed)
    weights = backbone_weights(prof)
    t0 = time.perf_counter()
    loc = train_localizer(fit if prof.fusion else train_fit, pairs, prof, seed=seed, progress=progress,
                          weights=weights, banks=banks)
    t1 = time.perf_counter()
    trained_on = "generated pairs"
    if prof.cls_real_share > 0:
        real = real if real is not None else GeneratedPairs.from_fit_data(fit)
        trained_on = f"generated pairs + real few-shot defects (real share {prof.cls_real_share:g})"
    cls = (train_classifier(pairs, prof, seed=seed, progress=progress, weights=weights,
                            real=real if prof.cls_real_share > 0 else None, real_share=prof.cls_real_share)
           if len(pairs.defect_types) > 1 else None)
    return InspectionModel(loc, cls, trained_on, timings={"localizer_s": round(t1 - t0, 2),
                                                          "classifier_s": round(time.perf_counter() - t1, 2)})


def score_pool(prof: Profile) -> int:
    """The window of the image score (`image_scores_from_maps`) at the profile's size."""
    return min(prof.score_pool or default_pool(prof.size, prof.size), prof.size)


@dataclass
class Delivered:
    """A trained model with its thresholds and heat-map scale, and the held-out goods that set them."""

    model: InspectionModel
    thresholds: Thresholds
    display_scale: dict
    held: FitData  # the held-out good training images (no model trained on them)


def train_delivered(fit: FitData, pairs: GeneratedPairs, prof: Profile, seed: int = 0, fpr: float = DEFAULT_FPR,
                    progress: bool = True, banks: BankCache | None = None) -> Delivered:
    """`train_inspection`, then the thresholds (`pipelines.thresholds.fit_thresholds`) and the heat-map
    scale on the held-out good training images, and the classifier the profile's `cls_input` asks
    for (`inspect.classifier_choice`, on the same k-fold maps): what `train` delivers and
    `benchmark` scores."""
    several = len(pairs.defect_types) > 1
    real = (GeneratedPairs.from_fit_data(fit)  # read once: the classifier and the choice both learn from them
            if several and (prof.cls_real_share > 0 or prof.cls_input != "image") else None)
    model = train_inspection(fit, pairs, prof, seed, progress, real, banks)
    train_fit, held = holdout_goods(fit, prof.fusion_holdout, seed)
    goods = good_images(held, prof.size, progress)
    maps = model.localizer.predict(goods, progress) if len(goods) else np.zeros((0, prof.size, prof.size), np.float32)
    t0 = time.perf_counter()
    thresholds, folds = fit_thresholds(fit, train_fit, goods, maps, pairs, model.localizer, prof, seed,
                                       score_pool(prof), fpr, progress)
    t1 = time.perf_counter()
    if isinstance(model.classifier, DefectClassifier):
        real = real if real is not None else GeneratedPairs.from_fit_data(fit)
        cls, choice, built = choose_classifier(folds, pairs, real, model.classifier, prof, seed,
                                               backbone_weights(prof))
        model.classifier.trunk = None  # only the fold retrainings needed it
        model = dataclasses.replace(model, classifier=cls, trained_on=_trained_on(choice.chosen, model.trained_on),
                                    cls_input=choice.chosen, cls_choice=choice.record, cls_candidates=built)
    model.timings.update(thresholds_s=round(t1 - t0, 2), classifier_choice_s=round(time.perf_counter() - t1, 2))
    sup = model.localizer.supervised if isinstance(model.localizer, FusedLocalizer) else model.localizer
    if isinstance(sup, Localizer):
        sup.drop_features()  # only the k-fold refits needed them
    scale = {**good_scale(maps), "n_images": int(len(goods)),
             "from": "held-out good training images (no model trained on them)"}
    return Delivered(model, thresholds, scale, held)


# ---- the model folder -------------------------------------------------------------------------------
def _state(prefix: str, module: torch.nn.Module) -> dict[str, np.ndarray]:
    return {f"{prefix}.{k}": v.detach().cpu().clone().numpy() for k, v in module.state_dict().items()}


def model_tensors(model: InspectionModel) -> dict[str, np.ndarray]:
    loc = model.localizer
    out: dict[str, np.ndarray] = {}
    if isinstance(loc, FusedLocalizer):
        out.update(_state("localizer", loc.supervised.model))
        out.update(_state("patchcore.extractor", loc.patchcore.extractor))
        assert loc.patchcore.bank is not None
        out["patchcore.bank"] = loc.patchcore.bank.float().cpu().numpy()
    else:
        assert isinstance(loc, Localizer)
        out.update(_state("localizer", loc.model))
    if model.classifier is not None:
        out.update(_state("classifier", model.classifier.model))
    return out


def _load_state(module: torch.nn.Module, tensors: dict[str, np.ndarray], prefix: str, where: Path) -> None:
    sd = {k[len(prefix) + 1:]: torch.from_numpy(v.copy()) for k, v in tensors.items() if k.startswith(prefix + ".")}
    try:
        module.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise DataError(where, f"weights do not fit the model ({str(exc).splitlines()[0]})") from None


def profile_of(info: ModelInfo) -> Profile:
    cfg = dict(info.config)
    name = cfg.pop("name", info.profile)
    cfg.pop("backbone", None)  # the backbone's weights are in the model's own file (model.json: backbone)
    base = PROFILES.get(name) or Profile(name=name)
    return get_profile(base, **cfg)


@dataclass
class TorchModel:
    """A model folder loaded for PyTorch inference."""

    info: ModelInfo
    model: InspectionModel
    pool: int

    def run(self, images: np.ndarray, cls_images: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(N, S, S, 3) uint8 (+ (N, C, C, 3) for the classifier) -> scores (N,), maps (N, S, S), probs (N, K)."""
        maps = self.model.localizer.predict(images)
        scores = image_scores_from_maps(maps, self.pool).astype(np.float32)
        cls = self.model.classifier
        if cls is None:
            probs = np.zeros((len(images), 0), np.float32)
        elif isinstance(cls, EnsembleDefectClassifier):  # the CNN on cls_images, the region on the map
            probs = cls.predict_proba(images, maps, cls_images)
        elif cls.needs_maps:  # the region its map marks, at the model's size
            probs = cls.predict_proba(images, maps)
        else:
            probs = cls.predict_proba(cls_images if cls_images is not None else images)
        return scores, maps, probs


def load_model(folder: str | Path, device: str | None = "cpu") -> TorchModel:
    """A model folder (model.json + weights.safetensors) as a `TorchModel`; DataError naming the file on
    a missing folder, a model.json of another schema, or weights that are missing, altered or corrupt."""
    folder = Path(folder)
    info = ModelInfo.read(folder)
    prof = dataclasses.replace(profile_of(info), device=device)
    tensors = read_weights(folder, info.weights)
    where = folder / info.weights.file
    dev = pick_device(device)
    # the architecture the backbone was trained with (a TAB folder may hold e.g. a resnet18)
    arch = str(info.backbone.get("name") or DEFAULT_ARCH)
    net = build_localizer(prof.localizer, prof.levels, prof.head_width, weights=None, arch=arch)
    _load_state(net, tensors, "localizer", where)
    net = net.to(dev).eval()
    sup = Localizer(net, prof.localizer, prof.size, dev, batch_size=prof.batch_size, tta=prof.tta)
    loc: MapPredictor = sup
    if info.fusion is not None:
        pc = PatchCore(prof.pc_levels, prof.pc_coreset, prof.pc_projection, prof.pc_sigma, info.seed, device,
                       weights=None, max_bank=prof.pc_max_bank, candidates=prof.pc_candidates, arch=arch)
        _load_state(pc.extractor, tensors, "patchcore.extractor", where)
        if "patchcore.bank" not in tensors:
            raise DataError(where, "weights hold no PatchCore bank")
        pc.bank = torch.from_numpy(tensors["patchcore.bank"].copy()).to(dev)
        f = info.fusion
        loc = FusedLocalizer(sup, pc, float(f["weight"]), (float(f["sup_stats"][0]), float(f["sup_stats"][1])),
                             (float(f["pc_stats"][0]), float(f["pc_stats"][1])))
    cls: Candidate | None = None
    labels = list(info.labels)
    image: DefectClassifier | None = None
    region: RegionDefectClassifier | None = None
    if labels and prof.cls_input != "region":  # the fine-tuned whole-image CNN
        tab_arch = arch if info.backbone.get("weights") == "tab" else None
        cnet = build_classifier(classifier_network(prof.classifier, tab_arch), len(labels), None,
                                prof.cls_finetune_from)
        image = DefectClassifier(cnet.to(dev).eval(), labels, prof.cls_size, dev, prof.cls_batch_size)
    if labels and prof.cls_input in ("region", "ensemble"):
        rnet = RegionClassifier(len(labels), None, arch)
        region = RegionDefectClassifier(rnet.to(dev).eval(), labels, prof.size, dev, prof.batch_size)
    cls = EnsembleDefectClassifier(image, region) if image is not None and region is not None else image or region
    if cls is not None:
        _load_state(cls.model, tensors, "classifier", where)
    return TorchModel(info, InspectionModel(loc, cls, "", prof.cls_input if cls is not None else "image"),
                      info.score_pool)


def _rel(path: Path, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(Path(path).resolve())


def save_model(out: Path, model: InspectionModel, prof: Profile, *, category: str, method: str, seed: int,
               n: int, split, data: Path, run: str | None, holdout: FitData, thresholds: Thresholds,
               display_scale: dict | None) -> ModelInfo:
    """Write `out/weights.safetensors`, then `out/model.json` (last: a folder with model.json is complete)."""
    ref = write_weights(out, model_tensors(model))
    loc = model.localizer
    fusion = None
    if isinstance(loc, FusedLocalizer):
        fusion = {"weight": loc.weight, "sup_stats": list(loc.sup_stats), "pc_stats": list(loc.pc_stats),
                  "bank_size": int(loc.patchcore.bank.shape[0]) if loc.patchcore.bank is not None else 0}
    cls = model.classifier
    used = dataclasses.replace(prof, cls_input=model.cls_input)  # "choose" is recorded as what it chose
    info = ModelInfo(
        category=category, method=method, defect_types=sorted(split.train_defects),
        labels=list(cls.labels) if cls is not None else [], image_size=prof.size,
        cls_size=(prof.size if model.cls_input == "region" else prof.cls_size) if cls is not None else None,
        classifier_choice=model.cls_choice,
        model=prof.localizer + ("+patchcore" if prof.fusion else ""), score_pool=score_pool(prof),
        profile=prof.name, config=used.to_dict(), thresholds=thresholds, weights=ref, fusion=fusion, seed=seed,
        n=n, backbone=backbone_identity(prof),
        split={"root": str(Path(data).resolve()),
               "train_defects": {t: [_rel(s.image, data) for s in v] for t, v in sorted(split.train_defects.items())},
               "train_good": [_rel(s.image, data) for s in split.train_good],
               "holdout_good": [_rel(s.image, data) for s in holdout.good],
               "test_defects": {t: len(v) for t, v in sorted(split.test_defects.items())},
               "test_good": len(split.test_good), "classifier_trained_on": model.trained_on},
        run=run, display_scale=display_scale, version=__version__,
        created=datetime.now(UTC).isoformat(timespec="seconds"))
    info.write(out)
    return info


def train_model(data: str | Path, out: str | Path, method: str, category: str | None = None,
                run: str | Path | None = None, profile: str | Profile = "cpu", seed: int = 0, n: int | None = None,
                fpr: float = DEFAULT_FPR, data_format: str | None = None, progress: bool = True) -> ModelInfo:
    """Train the model of synthesis `method` on one category's training split and write the folder `out`.

    Generates the method's pairs into `out/run` (or uses `run`, which must have been made from this
    split), trains with `train_inspection`, chooses thresholds with `train_delivered` at `fpr`, and
    writes weights.safetensors + model.json. Returns the ModelInfo written. Options and input files are
    checked before anything is written; a failed call removes the folders it created."""
    data, out = Path(data), Path(out)
    prof = get_profile(profile)
    if method not in available():
        raise ConfigError(f"unknown method {method!r}; available: {', '.join(available())}")
    if not 0.0 <= fpr < 1.0:
        raise ConfigError(f"--fpr must be in [0, 1), got {fpr}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed}")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n <= 0):
        raise ConfigError(f"n must be a positive number of pairs per defect type, got {n}")
    n = int(n) if n is not None else prof.n_per_type
    check_output_dir(out, [data])
    if (out / MODEL_JSON).exists():
        raise ConfigError(f"{out}: folder holds a trained model already; pick another --out")
    created = first_missing(out)
    try:
        return _train(data, out, method, category, None if run is None else Path(run), prof, seed, n, fpr,
                      data_format, progress)
    except BaseException as exc:
        if not isinstance(exc, KeyboardInterrupt):  # an interrupt keeps the generated run to resume
            remove_created(created)
        raise


def _train(data: Path, out: Path, method: str, category: str | None, run: Path | None, prof: Profile, seed: int,
           n: int, fpr: float, data_format: str | None, progress: bool) -> ModelInfo:
    ds = load_dataset(data, category=category, data_format=data_format)
    split = few_shot_split(ds, progress=progress)
    split.check_disjoint()
    if run is not None:
        if not (run / RUN_JSON).is_file():
            raise DataError(run, "--run: not a generated run folder (no run.json)")
        rinfo = RunInfo.read(run)
        check_training(run, rinfo, split, root=data)
        check_complete(run, rinfo, len(read_pairs(run, include_rejected=True)))
    prof, _ = with_chosen_size(prof, train_masks(split))  # a profile with a size ladder: from the masks
    fit = fit_data(split, size=prof.size)
    fit.verify()
    out.mkdir(parents=True, exist_ok=True)
    if run is None:
        run = out / "run"
        generate_run(data, run, method=method, n=n, category=ds.category, types=None, seed=seed,
                     size=prof.size, params=None, data_format=data_format, progress=progress)
    pairs = GeneratedPairs.from_run(run, prof.size, category=ds.category, progress=progress)
    pairs.check_covers(sorted(fit.defects), run)
    done = train_delivered(fit, pairs, prof, seed, fpr, progress)
    run_ref = _rel(run, out) if run.resolve().is_relative_to(out.resolve()) else str(run.resolve())
    return save_model(out, done.model, prof, category=ds.category, method=method, seed=seed, n=n, split=split,
                      data=data, run=run_ref, holdout=done.held, thresholds=done.thresholds,
                      display_scale=done.display_scale)
