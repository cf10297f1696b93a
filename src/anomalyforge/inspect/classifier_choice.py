"""Which defect-type classifier a model delivers, chosen on the k-fold TRAINING maps (profile `cls_input`).

- `image`: the fine-tuned whole-image classifier (`inspect.classify`), on generated pairs + real
  few-shot defects;
- `region`: the map-region classifier (`inspect.region_classify`), on the real few-shot defects
  described through their k-fold maps;
- `ensemble`: the average of the two (`inspect.ensemble_classify`);
- `choose`: all three are scored on the same k folds of the real few-shot training defects, as
  they would be deployed: fold f's defects are classified by classifiers that never saw them nor a
  generated pair pasted from them (the whole-image one retrained on the rest, the region one fitted
  on the other folds' defects, each described by its own fold map; the ensemble averages those
  two fold classifiers' probabilities). The best pooled accuracy wins; a tie keeps the simpler one
  (`image`, then `region`). No test image is read.

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
from anomalyforge.inspect.ensemble_classify import EnsembleDefectClassifier, average_probs
from anomalyforge.inspect.kfold import FoldMaps, donor_key
from anomalyforge.inspect.pairs import GeneratedPairs
from anomalyforge.inspect.profiles import Profile, backbone_arch
from anomalyforge.inspect.region_classify import RegionDefectClassifier, fit_region_classifier, logistic_head

RULE = ("pooled accuracy on the k folds of the real few-shot training defects, each classified by "
        "classifiers that saw neither it nor a pair pasted from it (the region one on its fold map; the "
        "ensemble averages the two); tie: image, then region")
CANDIDATES = ("image", "region", "ensemble")  # in the order a tie prefers
Candidate = DefectClassifier | RegionDefectClassifier | EnsembleDefectClassifier


@dataclass
class ClassifierChoice:
    """The chosen input (`image` or `region`) and the record (results.json / model.json `classifier_choice`)."""

    chosen: str
    record: dict[str, Any] = field(default_factory=dict)


def _uniform(n: int, k: int) -> np.ndarray:
    return np.full((n, k), 1.0 / k, np.float32)


def _fold_region(folds: FoldMaps, desc: np.ndarray, labels: list[str]) -> np.ndarray:
    """(N, K) probabilities of each fold defect by the region classifier fitted on the other folds
    (uniform where those hold fewer than two types: nothing to tell apart)."""
    probs = _uniform(len(folds.types), len(labels))
    for f in sorted(set(folds.fold_of)):
        held = [i for i, g in enumerate(folds.fold_of) if g == f]
        rest = [i for i, g in enumerate(folds.fold_of) if g != f]
        if len({folds.types[i] for i in rest}) < 2:
            continue
        w, b = logistic_head(desc[rest], [folds.types[i] for i in rest], labels)
        probs[held] = torch.softmax(torch.from_numpy(desc[held] @ w.T + b).float(), 1).numpy()
    return probs


def _fold_image(folds: FoldMaps, pairs: GeneratedPairs, real: GeneratedPairs, prof: Profile, seed: int,
                weights: str | None, trunk: torch.Tensor | None, labels: list[str]) -> np.ndarray:
    """(N, K) probabilities of each fold defect by the whole-image classifier retrained without its
    fold (uniform where too few types remain); `trunk`: the final classifier's cached trunk
    features of `pairs` then `real` (its rows are reused, not recomputed)."""
    probs = _uniform(len(folds.types), len(labels))
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
        p = clf.predict_proba(folds.images[held])
        probs[held] = 0.0  # the retrained classifier may know fewer types: put its columns in place
        probs[np.ix_(held, [labels.index(c) for c in clf.labels])] = p
    return probs


def _hits(probs: np.ndarray, folds: FoldMaps, labels: list[str]) -> list[bool]:
    return [labels[int(k)] == t for k, t in zip(probs.argmax(1), folds.types, strict=True)]


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
                      ) -> tuple[Candidate, ClassifierChoice, dict[str, Candidate]]:
    """The classifier to deliver under `prof.cls_input` (see the module doc): `image_cls` (already
    trained on everything), the region classifier fitted on `folds`, or their ensemble; the record
    of the choice; and every candidate that was built (by name), for a report of what the others
    would have done."""
    fixed = {"cls_input": prof.cls_input, "chosen": prof.cls_input, "rule": "fixed"}
    if prof.cls_input == "image":
        return image_cls, ClassifierChoice("image", fixed), {"image": image_cls}
    if folds is None or folds.images is None:
        if prof.cls_input in ("region", "ensemble"):
            raise ConfigError(f"cls_input={prof.cls_input} needs k-fold maps of the few-shot training defects (at "
                              "least 4 defects, and generated pairs left in every fold); use cls_input=image or choose")
        return image_cls, ClassifierChoice("image", {"cls_input": "choose", "chosen": "image",
                                                     "rule": "no k-fold maps: nothing to learn regions from"}), \
            {"image": image_cls}
    labels = list(image_cls.labels)
    region = region_from_folds(folds, labels, prof, weights)
    built: dict[str, Candidate] = {"image": image_cls, "region": region,
                                   "ensemble": EnsembleDefectClassifier(image_cls, region)}
    if prof.cls_input in ("region", "ensemble"):
        return built[prof.cls_input], ClassifierChoice(prof.cls_input, fixed), built
    desc = region.descriptors(folds.images, folds.maps)
    trunk = image_cls.trunk
    if trunk is not None and len(trunk) != len(pairs) + (len(real) if prof.cls_real_share > 0 else 0):
        trunk = None  # not of these pairs: recompute per fold
    p_image = _fold_image(folds, pairs, real, prof, seed, weights, trunk, labels)
    p_region = _fold_region(folds, desc, labels)
    hits = {"image": _hits(p_image, folds, labels), "region": _hits(p_region, folds, labels),
            "ensemble": _hits(average_probs(p_image, p_region), folds, labels)}
    scores = {name: _accuracy(h) for name, h in hits.items()}
    chosen = max(CANDIDATES, key=lambda c: (scores[c], -CANDIDATES.index(c)))
    per_fold = {name: [_accuracy([x for x, g in zip(h, folds.fold_of, strict=True) if g == f])
                       for f in sorted(set(folds.fold_of))] for name, h in hits.items()}
    record = {"cls_input": "choose", "chosen": chosen, "rule": RULE, "accuracy": scores, "per_fold": per_fold,
              "n_defects": len(folds.types), "k": len(set(folds.fold_of))}
    return built[chosen], ClassifierChoice(chosen, record), built


__all__ = ["CANDIDATES", "Candidate", "ClassifierChoice", "choose_classifier", "region_from_folds"]
