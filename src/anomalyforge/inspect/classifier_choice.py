"""Which defect-type classifier a model delivers, chosen on the k-fold TRAINING maps (profile `cls_input`).

- `image`: the fine-tuned whole-image classifier (`inspect.classify`), on generated pairs + real
  few-shot defects;
- `region`: the map-region classifier (`inspect.region_classify`), on the real few-shot defects
  described through their k-fold maps;
- `choose`: both are scored on the same k folds of the real few-shot training defects, as they
  would be deployed: fold f's defects are classified by a classifier that never saw them nor a
  generated pair pasted from them (the whole-image one retrained on the rest, the region one fitted
  on the other folds' defects, each described by its own fold map). The better pooled accuracy
  wins; a tie keeps `image`. No test image is read.

Without k-fold maps (fewer than `inspect.kfold.MIN_DEFECTS` training defects, or a fold that
would keep no generated pair) there is nothing to learn regions from: `image`, and the record says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from anomalyforge.errors import ConfigError
from anomalyforge.inspect.classify import DefectClassifier, train_classifier
from anomalyforge.inspect.kfold import FoldMaps, donor_key
from anomalyforge.inspect.pairs import GeneratedPairs
from anomalyforge.inspect.profiles import Profile, backbone_arch
from anomalyforge.inspect.region_classify import RegionDefectClassifier, fit_region_classifier, logistic_head

RULE = ("pooled accuracy on the k folds of the real few-shot training defects, each classified by a "
        "classifier that saw neither it nor a pair pasted from it (the region one on its fold map); tie: image")


@dataclass
class ClassifierChoice:
    """The chosen input (`image` or `region`) and the record (results.json / model.json `classifier_choice`)."""

    chosen: str
    record: dict[str, Any] = field(default_factory=dict)


def _fold_region(folds: FoldMaps, desc: np.ndarray, labels: list[str]) -> list[bool]:
    hits = [False] * len(folds.types)
    for f in sorted(set(folds.fold_of)):
        held = [i for i, g in enumerate(folds.fold_of) if g == f]
        rest = [i for i, g in enumerate(folds.fold_of) if g != f]
        if len({folds.types[i] for i in rest}) < 2:
            continue  # nothing to tell apart: counted as misses
        w, b = logistic_head(desc[rest], [folds.types[i] for i in rest], labels)
        pred = (desc[held] @ w.T + b).argmax(1)
        for i, p in zip(held, pred, strict=True):
            hits[i] = labels[int(p)] == folds.types[i]
    return hits


def _fold_image(folds: FoldMaps, pairs: GeneratedPairs, real: GeneratedPairs, prof: Profile, seed: int,
                weights: str | None, trunk: torch.Tensor | None) -> list[bool]:
    """Hits of the whole-image classifier retrained per fold; `trunk`: the final classifier's cached
    trunk features of `pairs` then `real` (its rows are reused, not recomputed)."""
    hits = [False] * len(folds.types)
    with_real = prof.cls_real_share > 0
    gen_keys = [donor_key(d) if d else "" for d in (pairs.donors or [""] * len(pairs))]
    real_keys = [donor_key(d) for d in (real.donors or [])]
    assert folds.images is not None
    for f in sorted(set(folds.fold_of)):
        held = [i for i, g in enumerate(folds.fold_of) if g == f]
        out = {folds.keys[i] for i in held}
        keep = [i for i, k in enumerate(gen_keys) if k not in out]
        keep_real = [i for i, k in enumerate(real_keys) if k not in out]
        sub, sub_real = pairs.subset(keep), real.subset(keep_real)
        if len(sub.defect_types) < 2:
            continue
        rows = keep + ([len(pairs) + i for i in keep_real] if with_real else [])
        clf = train_classifier(sub, prof, seed=seed, progress=False, weights=weights,
                               real=sub_real if with_real else None, real_share=prof.cls_real_share,
                               trunk=trunk[rows] if trunk is not None else None)
        pred = clf.predict(folds.images[held])
        for i, p in zip(held, pred, strict=True):
            hits[i] = p == folds.types[i]
    return hits


def _accuracy(hits: list[bool]) -> float:
    return round(float(np.mean(hits)), 4) if hits else 0.0


def region_from_folds(folds: FoldMaps, labels: list[str], prof: Profile, weights: str | None
                      ) -> RegionDefectClassifier:
    """The region classifier on every real few-shot defect, each through its k-fold map."""
    assert folds.images is not None
    return fit_region_classifier(folds.images, folds.maps, folds.types, labels, weights, backbone_arch(prof),
                                 prof.device, prof.batch_size)


def choose_classifier(folds: FoldMaps | None, pairs: GeneratedPairs, real: GeneratedPairs, image_cls: DefectClassifier,
                      prof: Profile, seed: int, weights: str | None
                      ) -> tuple[DefectClassifier | RegionDefectClassifier, ClassifierChoice]:
    """The classifier to deliver under `prof.cls_input` (see the module doc): `image_cls` (already
    trained on everything) or the region classifier fitted on `folds`; and the record of the choice."""
    if prof.cls_input == "image":
        return image_cls, ClassifierChoice("image", {"cls_input": "image", "chosen": "image", "rule": "fixed"})
    if folds is None or folds.images is None:
        if prof.cls_input == "region":
            raise ConfigError("cls_input=region needs k-fold maps of the few-shot training defects (at least "
                              "4 defects, and generated pairs left in every fold); use cls_input=image or choose")
        return image_cls, ClassifierChoice("image", {"cls_input": "choose", "chosen": "image",
                                                     "rule": "no k-fold maps: nothing to learn regions from"})
    labels = list(image_cls.labels)
    region = region_from_folds(folds, labels, prof, weights)
    if prof.cls_input == "region":
        return region, ClassifierChoice("region", {"cls_input": "region", "chosen": "region", "rule": "fixed"})
    desc = region.descriptors(folds.images, folds.maps)
    r_hits = _fold_region(folds, desc, labels)
    trunk = image_cls.trunk
    if trunk is not None and len(trunk) != len(pairs) + (len(real) if prof.cls_real_share > 0 else 0):
        trunk = None  # not of these pairs: recompute per fold
    i_hits = _fold_image(folds, pairs, real, prof, seed, weights, trunk)
    scores = {"image": _accuracy(i_hits), "region": _accuracy(r_hits)}
    chosen = "region" if scores["region"] > scores["image"] else "image"
    per_fold = {name: [_accuracy([h for h, g in zip(hits, folds.fold_of, strict=True) if g == f])
                       for f in sorted(set(folds.fold_of))] for name, hits in (("image", i_hits), ("region", r_hits))}
    record = {"cls_input": "choose", "chosen": chosen, "rule": RULE, "accuracy": scores, "per_fold": per_fold,
              "n_defects": len(folds.types), "k": len(set(folds.fold_of))}
    return (region if chosen == "region" else image_cls), ClassifierChoice(chosen, record)


__all__ = ["ClassifierChoice", "choose_classifier", "region_from_folds"]
