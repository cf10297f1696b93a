"""An exported model (`anomalyforge export-model`) run by onnxruntime: no torch.

The .onnx file holds the whole graph (inputs `image` (N, 3, S, S) and `cls_image` (N, 3, C, C),
float RGB in [0, 1]; outputs `score`, `map`, `probs`) and, in its metadata under
`anomalyforge.model`, the model's model.json (`formats.model.ModelInfo`): thresholds, labels, sizes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from anomalyforge.errors import ConfigError, DataError
from anomalyforge.formats.model import ModelInfo

METADATA_KEY = "anomalyforge.model"


def _nchw(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2)).astype(np.float32) / np.float32(255.0)


class OnnxModel:
    """An exported model file loaded into an onnxruntime CPU session."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        try:
            import onnxruntime as ort  # lazy: onnxruntime is only needed to run an exported model
        except ModuleNotFoundError:
            raise ConfigError("onnxruntime is not installed; pip install onnxruntime") from None
        path = Path(path)
        if not path.is_file():
            raise DataError(path, "exported model file not found")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's InvalidProtobuf / Fail: not an ONNX model
            raise DataError(path, f"cannot load ONNX model ({type(exc).__name__})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in meta:
            raise DataError(path, "not an anomalyforge model (no model description in its metadata)")
        try:
            doc = json.loads(meta[METADATA_KEY])
        except json.JSONDecodeError:
            raise DataError(path, "model description in the metadata is not valid JSON") from None
        self.info = ModelInfo.from_dict(doc, path)
        self.path = path

    def run(self, images: np.ndarray, cls_images: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(N, S, S, 3) uint8 (+ (N, C, C, 3)) -> scores (N,), maps (N, S, S), probs (N, K)."""
        x = _nchw(images)
        xc = _nchw(cls_images) if cls_images is not None else x
        feeds = {"image": x, "cls_image": xc}
        names = {i.name for i in self.session.get_inputs()}
        score, maps, probs = self.session.run(["score", "map", "probs"], {k: v for k, v in feeds.items() if k in names})
        return np.asarray(score), np.asarray(maps), np.asarray(probs)
