"""A pretrained-backbone folder (TAB, `anomalyforge pretrain-backbone`): `BACKBONE/backbone.json`,
`BACKBONE/weights.safetensors` (the encoder's stage state dict, what detectors load) and
`BACKBONE/state.safetensors` (projection head, optimiser momentum, text features: to resume).

Schema of backbone.json (version 1):

    schema_version  int      1
    kind            str      "anomalyforge-backbone"
    arch            str      the encoder (e.g. "efficientnet-lite0"); init str: its starting weights
    weights         WeightsRef  {file, sha256, n_tensors} of weights.safetensors
    state           WeightsRef|null  the resume state (same fields)
    complete        bool     every epoch done (detectors refuse an unfinished backbone)
    epochs_done     int      epochs finished (resume starts after it)
    profile         str;  config object: every pretraining setting
    seed            int
    categories      [object] {name, class_name, data, n_train_good, n_used, used [path]} per class
    methods         [str]    the synthetic-anomaly generators
    text_encoder    object   {kind "none"|"clip", id, ..., note}: what the text features came from
    prompts         object   {templates, normal, abnormal} (the sentence lists)
    history         [object] per epoch: {epoch, loss, time_s, peak_rss_mb}
    version, created  str
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from anomalyforge.atomic import write_bytes_atomic
from anomalyforge.errors import ConfigError, DataError
from anomalyforge.formats.model import WeightsRef, sha256_file
from anomalyforge.formats.schema import Document

BACKBONE_JSON = "backbone.json"
WEIGHTS = "weights.safetensors"
STATE = "state.safetensors"
SCHEMA_VERSION = 1
KIND = "anomalyforge-backbone"
IDENTITY_KEYS = ("arch", "init", "profile", "config", "seed", "categories", "methods", "text_encoder")


@dataclass
class BackboneInfo(Document):
    """The typed backbone.json of one pretrained-backbone folder."""

    FILE: ClassVar[str] = BACKBONE_JSON
    VERSION: ClassVar[int] = SCHEMA_VERSION
    KIND: ClassVar[str] = KIND

    arch: str
    init: str | None
    weights: WeightsRef
    profile: str
    config: dict[str, Any]
    categories: list[dict[str, Any]]
    methods: list[str]
    text_encoder: dict[str, Any]
    prompts: dict[str, Any]
    kind: str = KIND
    state: WeightsRef | None = None
    complete: bool = False
    epochs_done: int = 0
    seed: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    version: str = ""
    created: str = ""
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, path: str | Path) -> BackboneInfo:
        """backbone.json of a backbone folder (or the file); DataError naming it when it is not one."""
        return cls.read_folder(path, "backbone folder", "backbone description",
                               "make one with `anomalyforge pretrain-backbone`")

    @property
    def identity(self) -> str:
        """Short id of the backbone (its weights' hash)."""
        return self.weights.sha256[:16]


def write_tensors(folder: str | Path, name: str, tensors: dict[str, Any]) -> WeightsRef:
    """torch tensors into `folder/name` (safetensors, atomically); returns its reference."""
    from safetensors.torch import save  # lazy: safetensors is only needed with a backbone

    data = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
    write_bytes_atomic(Path(folder) / name, data)
    return WeightsRef(name, hashlib.sha256(data).hexdigest(), len(tensors))


def read_tensors(folder: str | Path, ref: WeightsRef) -> dict[str, Any]:
    """The torch tensors of one file of a backbone folder; DataError when missing, altered or corrupt."""
    from safetensors.torch import load  # lazy: safetensors is only needed with a backbone

    path = Path(folder) / ref.file
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(path, "backbone file missing") from None
    if hashlib.sha256(data).hexdigest() != ref.sha256:
        raise DataError(path, "does not match backbone.json (sha256 differs): corrupt or replaced")
    try:
        return load(data)
    except Exception as exc:  # SafetensorError: a header that does not parse
        raise DataError(path, f"cannot read backbone tensors ({type(exc).__name__})") from None


def resolve_backbone(folder: str | Path, arch: str | None = None) -> tuple[str, dict[str, Any]]:
    """A finished backbone folder (of architecture `arch`, or any when None): (path of its verified
    weights file, its identity for results.json / model.json). DataError/ConfigError on anything else."""
    folder = Path(folder)
    info = BackboneInfo.read(folder)
    where = folder / BACKBONE_JSON
    if not info.complete:
        raise DataError(where, f"pretraining unfinished ({info.epochs_done} of {info.config.get('epochs')} epochs); "
                               "rerun the same pretrain-backbone command to resume")
    if arch is not None and info.arch != arch:
        raise ConfigError(f"{where}: a {info.arch} backbone; this detector uses {arch}")
    path = folder / info.weights.file
    if not path.is_file():
        raise DataError(path, "backbone weights missing")
    if sha256_file(path) != info.weights.sha256:
        raise DataError(path, "does not match backbone.json (sha256 differs): corrupt or replaced")
    return str(path.resolve()), identity_of(info, folder)


def identity_of(info: BackboneInfo, folder: str | Path) -> dict[str, Any]:
    """What results.json / model.json record about a pretrained backbone."""
    return {"name": info.arch, "weights": "tab", "folder": str(Path(folder).resolve()),
            "weights_file": info.weights.file, "sha256": info.weights.sha256,
            "text_encoder": info.text_encoder.get("kind"), "text_encoder_id": info.text_encoder.get("id"),
            "classes": [c.get("class_name") for c in info.categories], "methods": list(info.methods),
            "profile": info.profile, "epochs": info.epochs_done}


__all__ = ["BACKBONE_JSON", "IDENTITY_KEYS", "KIND", "SCHEMA_VERSION", "STATE", "WEIGHTS", "BackboneInfo",
           "identity_of", "read_tensors", "resolve_backbone", "write_tensors"]
