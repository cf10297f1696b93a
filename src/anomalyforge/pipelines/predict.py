"""`anomalyforge predict` and `anomalyforge export-model`: a trained model folder run with PyTorch, or
exported to one ONNX file that `anomalyforge.deploy` runs with onnxruntime (no torch).

Both runtimes go through `deploy.predict_images`, so they write the same files and columns.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from anomalyforge.atomic import write_bytes_atomic
from anomalyforge.deploy import METADATA_KEY, OnnxModel, predict_images
from anomalyforge.deploy.openvino import RT_INFO_PATH, OpenVinoModel, import_openvino
from anomalyforge.deploy.predict import resize_for_classifier
from anomalyforge.errors import ConfigError, DataError
from anomalyforge.formats.predictions import PredictionRow
from anomalyforge.inspect.graph import InspectionGraph
from anomalyforge.pipelines.train import TorchModel, load_model

OPSET = 17
FORMATS = {"onnx": ".onnx", "openvino": ".xml"}


def open_model(model: str | Path) -> TorchModel | OnnxModel | OpenVinoModel:
    """A model folder (PyTorch), an exported .onnx file (onnxruntime) or .xml file (OpenVINO)."""
    model = Path(model)
    if model.suffix.lower() == ".onnx":
        return OnnxModel(model)
    if model.suffix.lower() == ".xml":
        return OpenVinoModel(model)
    return load_model(model)


def predict(model: str | Path, paths: Sequence[str | Path], out: str | Path, batch: int = 8,
            skip_bad: bool = False, progress: bool = False) -> list[PredictionRow]:
    """Predict `paths` (files, folders, globs) with a model folder or .onnx file into `out`."""
    return predict_images(open_model(model), paths, out, batch=batch, skip_bad=skip_bad, progress=progress)


def inspection_graph(model: TorchModel) -> InspectionGraph:
    return InspectionGraph(model.model.localizer, model.model.classifier, model.pool).eval()


def export_model(model: str | Path, out: str | Path, fmt: str = "onnx") -> Path:
    """Write the model folder `model` as one ONNX file `out` (`fmt` "onnx"), or as an OpenVINO IR
    `out` = MODEL.xml + MODEL.bin (`fmt` "openvino", converted from that ONNX graph, fp32): image ->
    (score, map, type probabilities), the PatchCore nearest-neighbour search included, model.json
    in its metadata. Batch size is dynamic."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; available: {', '.join(FORMATS)}")
    out = Path(out)
    if out.suffix.lower() != FORMATS[fmt]:
        raise ConfigError(f"{out}: the exported {fmt} file must end in {FORMATS[fmt]}")
    if out.is_dir():
        raise ConfigError(f"{out}: is a folder")
    ov = import_openvino() if fmt == "openvino" else None  # before any work: one line when missing
    tm = load_model(model)
    graph = inspection_graph(tm)
    info = tm.info
    s, c = info.image_size, info.cls_size or info.image_size
    x = torch.rand(2, 3, s, s, generator=torch.Generator().manual_seed(0))
    xc = torch.rand(2, 3, c, c, generator=torch.Generator().manual_seed(1))
    import onnx  # lazy: onnx is only needed to export

    with tempfile.TemporaryDirectory(prefix="af_export_") as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on constant shapes: the model size is fixed
        raw = Path(tmp) / "graph.onnx"
        torch.onnx.export(graph, (x, xc), raw, input_names=["image", "cls_image"],
                          output_names=["score", "map", "probs"], opset_version=OPSET, dynamo=False,
                          dynamic_axes={"image": {0: "batch"}, "cls_image": {0: "batch"}, "score": {0: "batch"},
                                        "map": {0: "batch"}, "probs": {0: "batch"}})
        proto = onnx.load(str(raw))
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, json.dumps(info.to_dict())
        if ov is None:
            write_bytes_atomic(out, proto.SerializeToString())
            return out
        onnx.save(proto, str(raw))
        ir = ov.convert_model(str(raw))
        ir.set_rt_info(json.dumps(info.to_dict()), RT_INFO_PATH)
        ov.save_model(ir, str(Path(tmp) / "model.xml"), compress_to_fp16=False)
        # the .bin first: an .xml (what predict opens) only ever lies beside its complete weights
        write_bytes_atomic(out.with_suffix(".bin"), (Path(tmp) / "model.bin").read_bytes())
        write_bytes_atomic(out, (Path(tmp) / "model.xml").read_bytes())  # it reads the .bin of its own stem
    return out


def check_parity(model: str | Path, onnx_file: str | Path, images: np.ndarray) -> dict[str, float]:
    """Max abs differences between PyTorch (the model folder) and the exported file (onnxruntime for
    .onnx, OpenVINO for .xml) on `images`."""
    tm, om = load_model(model), open_model(onnx_file)
    c = tm.info.cls_size
    xc = np.stack([resize_for_classifier(im, c) for im in images]) if c else None
    a, b = tm.run(images, xc), om.run(images, xc)
    if a[1].shape != b[1].shape:
        raise DataError(onnx_file, f"map shape {b[1].shape} differs from the model's {a[1].shape}")
    return {k: float(np.abs(np.asarray(u, np.float64) - np.asarray(v, np.float64)).max()) if np.size(u) else 0.0
            for k, u, v in zip(("score", "map", "probs"), a, b, strict=True)}
