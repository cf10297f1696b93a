"""anomalyforge.deploy: run an exported model on the line without PyTorch.

    from anomalyforge.deploy import OnnxModel, predict_images
    rows = predict_images(OnnxModel("bottle.onnx"), ["images/"], "predictions/")

Importing this package (and predicting with it) imports no torch: only numpy, OpenCV, Pillow and
onnxruntime. `anomalyforge predict MODEL.onnx ...` runs through it.
"""

from __future__ import annotations

from pathlib import Path

from anomalyforge.deploy.onnx import METADATA_KEY, OnnxModel
from anomalyforge.deploy.predict import gather_images, predict_images
from anomalyforge.formats.predictions import PredictionRow


def predict_onnx(model: str | Path, paths: list[str | Path], out: str | Path, batch: int = 8,
                 skip_bad: bool = False) -> list[PredictionRow]:
    """`predict_images` with the exported model file `model`."""
    return predict_images(OnnxModel(model), paths, out, batch=batch, skip_bad=skip_bad)


__all__ = ["METADATA_KEY", "OnnxModel", "gather_images", "predict_images", "predict_onnx"]
