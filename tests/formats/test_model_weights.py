"""The model folder's weights file: equal tensors stored once, restored on reading; old files read."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from safetensors.numpy import save

from anomalyforge.errors import DataError
from anomalyforge.formats.model import WEIGHTS, WeightsRef, _aliases, read_weights, write_weights


def _tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 32)).astype(np.float32)
    return {"localizer.backbone.w": w, "patchcore.extractor.w": w.copy(), "classifier.w": w + 1,
            "int.same_bytes": w.view(np.int32).copy(),  # the same bytes, another dtype: kept apart
            "head.b": rng.standard_normal(8).astype(np.float32)}


def test_equal_tensors_are_stored_once_and_read_back(tmp_path):
    tensors = _tensors()
    ref = write_weights(tmp_path, tensors)
    data = (tmp_path / WEIGHTS).read_bytes()
    assert _aliases(data) == {"patchcore.extractor.w": "localizer.backbone.w"}
    assert ref.n_tensors == 5
    assert len(data) < len(save(tensors))  # one 8 KiB copy fewer
    back = read_weights(tmp_path, ref)
    assert set(back) == set(tensors)
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and np.array_equal(back[k], v)


def test_same_tensors_give_the_same_bytes(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    t = _tensors()
    assert write_weights(a, t).sha256 == write_weights(b, dict(reversed(list(t.items())))).sha256


def test_a_file_without_aliases_still_reads(tmp_path):
    """Model folders written before the aliases existed."""
    t = _tensors()
    data = save(t)
    (tmp_path / WEIGHTS).write_bytes(data)
    back = read_weights(tmp_path, WeightsRef(WEIGHTS, hashlib.sha256(data).hexdigest(), len(t)))
    assert set(back) == set(t)


def test_an_alias_to_a_missing_tensor_is_a_one_line_error(tmp_path):
    data = save({"a": np.zeros(3, np.float32)}, metadata={"aliases": '{"b": "gone"}'})
    (tmp_path / WEIGHTS).write_bytes(data)
    with pytest.raises(DataError, match=r"weights.safetensors: weights alias a tensor the file does not hold \(gone\)"):
        read_weights(tmp_path, WeightsRef(WEIGHTS, hashlib.sha256(data).hexdigest(), 2))
