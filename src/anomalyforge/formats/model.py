"""A trained model folder: `MODEL/model.json` (everything needed to run and audit the model) and
`MODEL/weights.safetensors` (every tensor: localiser, PatchCore bank and backbone, classifier; a
tensor equal to another is stored once, its name kept as an alias in the file's metadata).

Schema of model.json (version 1):

    schema_version  int      1
    kind            str      "anomalyforge-model"
    category, method  str    the category and the synthesis method the model was trained with
    defect_types    [str]    the few-shot training split's defect types
    labels          [str]    the classifier's output classes in order (empty: no classifier)
    image_size      int      side the localiser runs at (images are resized to it)
    cls_size        int|null side the classifier runs at (a region classifier: image_size, on the map)
    classifier_choice object|null {cls_input, chosen "image"|"region", rule, accuracy {image, region},
                             per_fold, n_defects, k}: what the classifier looks at and how it was
                             chosen (`inspect.classifier_choice`; config.cls_input is the chosen one)
    model           str      the localiser (e.g. "feature_head+patchcore")
    fusion          object|null  {weight, sup_stats [mean, std], pc_stats [mean, std]} of a fused model
    score_pool      int      image score = max of the score_pool x score_pool averaged map
    profile         str      profile name; config: the profile's every setting; seed int; n int
    backbone        object   {name, weights_file, sha256}: the pretrained weights' identity
    split           object   {root, train_defects {type: [path]}, train_good [path], holdout_good [path],
                             test_defects {type: n}, test_good n}: the few-shot split (paths relative to root)
    run             str|null the generated run the model was trained on
    thresholds      Thresholds  image and pixel decision thresholds and how they were chosen:
                             {image, pixel, fpr, n_images, n_pixels, image_fpr, pixel_fpr, rule,
                             pixel_from "kfold_f1"|"good_fpr", kfold {k, n_defects, f1, folds, refit}|null}
    display_scale   object|null heat-map scale {lo, hi} from held-out good training images
    weights         WeightsRef  {file, sha256, n_tensors}
    version, created  str
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from anomalyforge.atomic import write_bytes_atomic
from anomalyforge.errors import DataError
from anomalyforge.formats.run import sha256_file
from anomalyforge.formats.schema import Document

MODEL_JSON = "model.json"
WEIGHTS = "weights.safetensors"
SCHEMA_VERSION = 1
KIND = "anomalyforge-model"


@dataclass
class Thresholds:
    """Decision thresholds chosen on held-out good TRAINING images (never the test split)."""

    image: float  # verdict "defect" when the image score is > image
    pixel: float  # mask pixel set when its map value is > pixel
    fpr: float  # the stated false-alarm rate both were chosen for
    n_images: int  # held-out good images they were chosen on
    n_pixels: int
    image_fpr: float  # share of those images / pixels above the threshold (achieved rate)
    pixel_fpr: float
    rule: str = ""
    # how the pixel threshold was chosen: "kfold_f1" (best pixel F1 on k-fold held-out training
    # defects, see inspect.kfold) or "good_fpr" (flags <= fpr of the held-out good pixels)
    pixel_from: str = "good_fpr"
    kfold: dict[str, Any] | None = None  # {k, n_defects, f1, folds [...], refit, ...} with "kfold_f1"
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class WeightsRef:
    file: str
    sha256: str
    n_tensors: int
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelInfo(Document):
    """The typed model.json of one model folder."""

    FILE: ClassVar[str] = MODEL_JSON
    VERSION: ClassVar[int] = SCHEMA_VERSION
    KIND: ClassVar[str] = KIND

    category: str
    method: str
    defect_types: list[str]
    labels: list[str]
    image_size: int
    model: str
    score_pool: int
    profile: str
    config: dict[str, Any]
    thresholds: Thresholds
    weights: WeightsRef
    kind: str = KIND
    cls_size: int | None = None
    classifier_choice: dict[str, Any] | None = None
    fusion: dict[str, Any] | None = None
    seed: int = 0
    n: int = 0
    backbone: dict[str, Any] = field(default_factory=dict)
    split: dict[str, Any] = field(default_factory=dict)
    run: str | None = None
    display_scale: dict[str, Any] | None = None
    version: str = ""
    created: str = ""
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, path: str | Path) -> ModelInfo:
        """model.json of a model folder (or the file); DataError naming it when it is not one."""
        return cls.read_folder(path, "model folder", "model description", "train one with `anomalyforge train`")

    @property
    def identity(self) -> str:
        """Short id of the model (its weights' hash), recorded beside every prediction."""
        return self.weights.sha256[:16]


ALIASES = "aliases"  # safetensors metadata: {tensor: the stored tensor it equals}, as JSON


def _dedup(tensors: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The tensors with each one equal to an earlier one (in name order: same dtype, shape and bytes)
    left out, and the aliases that restore them. A model's frozen backbones (localiser, PatchCore,
    region classifier) hold the same weights; they are stored once."""
    kept: dict[str, np.ndarray] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    for k in sorted(tensors):
        v = np.ascontiguousarray(tensors[k])
        key = (v.dtype.str, v.shape, hashlib.sha256(v.tobytes()).digest())
        if key in seen and np.array_equal(kept[seen[key]], v):
            aliases[k] = seen[key]
        else:
            seen.setdefault(key, k)
            kept[k] = v
    return kept, aliases


def write_weights(folder: str | Path, tensors: dict[str, np.ndarray]) -> WeightsRef:
    """All tensors into `folder/weights.safetensors` (atomically), each distinct tensor once
    (`_dedup`; the aliases go in the file's metadata); returns its reference."""
    from safetensors.numpy import save  # lazy: safetensors is only needed with a model

    kept, aliases = _dedup(tensors)
    data = save(kept, metadata={ALIASES: json.dumps(aliases, sort_keys=True)} if aliases else None)
    write_bytes_atomic(Path(folder) / WEIGHTS, data)
    return WeightsRef(WEIGHTS, hashlib.sha256(data).hexdigest(), len(tensors))


def _aliases(data: bytes) -> dict[str, str]:
    """The aliases in a safetensors file's header (none in files written before they existed)."""
    n = int.from_bytes(data[:8], "little")
    meta = json.loads(data[8:8 + n]).get("__metadata__") or {}
    return json.loads(meta.get(ALIASES, "{}"))


def read_weights(folder: str | Path, ref: WeightsRef) -> dict[str, np.ndarray]:
    """The tensors of a model folder (aliases restored); DataError naming the file when it is
    missing, altered or corrupt."""
    from safetensors.numpy import load  # lazy: safetensors is only needed with a model

    path = Path(folder) / ref.file
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(path, "model weights missing") from None
    if hashlib.sha256(data).hexdigest() != ref.sha256:
        raise DataError(path, "model weights do not match model.json (sha256 differs): corrupt or replaced")
    try:
        tensors = load(data)
        aliases = _aliases(data)
    except Exception as exc:  # SafetensorError / a header that does not parse
        raise DataError(path, f"cannot read model weights ({type(exc).__name__})") from None
    missing = sorted(v for v in aliases.values() if v not in tensors)
    if missing:
        raise DataError(path, f"weights alias a tensor the file does not hold ({missing[0]})")
    tensors.update({k: tensors[v] for k, v in aliases.items()})
    return tensors


__all__ = ["KIND", "MODEL_JSON", "SCHEMA_VERSION", "WEIGHTS", "ModelInfo", "Thresholds", "WeightsRef",
           "read_weights", "sha256_file", "write_weights"]
