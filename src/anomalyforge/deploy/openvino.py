"""An exported model (`anomalyforge export-model --format openvino`) run by OpenVINO: no torch.

The OpenVINO IR (MODEL.xml + MODEL.bin beside it) is the ONNX graph converted by OpenVINO, in fp32
(never compressed to fp16), with the model's model.json (`formats.model.ModelInfo`) in its runtime
info under `anomalyforge/model`. It is compiled for the CPU at fp32 inference precision (OpenVINO
would otherwise pick bf16 on CPUs that have it), so its outputs match PyTorch's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from anomalyforge.deploy.onnx import _nchw
from anomalyforge.errors import ConfigError, DataError
from anomalyforge.formats.model import ModelInfo

RT_INFO_PATH = ["anomalyforge", "model"]


def import_openvino() -> Any:
    """The openvino module; ConfigError (one line) when it is not installed."""
    try:
        import openvino  # lazy: the optional extra [openvino]
    except ImportError:
        raise ConfigError("openvino is not installed; pip install 'anomalyforge[openvino]' (or openvino)") from None
    return openvino


class OpenVinoModel:
    """An exported OpenVINO IR file compiled for the CPU."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        ov = import_openvino()
        path = Path(path)
        if not path.is_file():
            raise DataError(path, "exported model file not found")
        if not path.with_suffix(".bin").is_file():
            raise DataError(path.with_suffix(".bin"), "OpenVINO weights file missing (it lies beside the .xml)")
        core = ov.Core()
        try:
            model = core.read_model(str(path))
        except Exception as exc:  # RuntimeError of the IR parser: not an OpenVINO model
            raise DataError(path, f"cannot load OpenVINO model ({type(exc).__name__})") from None
        if not model.has_rt_info(RT_INFO_PATH):
            raise DataError(path, "not an anomalyforge model (no model description in its runtime info)")
        try:
            doc = json.loads(model.get_rt_info(RT_INFO_PATH).astype(str))
        except json.JSONDecodeError:
            raise DataError(path, "model description in the runtime info is not valid JSON") from None
        self.info = ModelInfo.from_dict(doc, path)
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            self.compiled = core.compile_model(model, "CPU", config)
        except Exception as exc:  # a .bin that does not fit the .xml
            raise DataError(path, f"cannot compile OpenVINO model ({str(exc).splitlines()[0][:120]})") from None
        self.inputs = {i.get_any_name() for i in self.compiled.inputs}
        self.path = path

    def run(self, images: np.ndarray, cls_images: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(N, S, S, 3) uint8 (+ (N, C, C, 3)) -> scores (N,), maps (N, S, S), probs (N, K)."""
        x = _nchw(images)
        xc = _nchw(cls_images) if cls_images is not None else x
        feeds = {k: v for k, v in {"image": x, "cls_image": xc}.items() if k in self.inputs}
        res = self.compiled(feeds)
        out = {k.get_any_name(): np.asarray(v) for k, v in res.items()}
        return out["score"], out["map"], out["probs"]
