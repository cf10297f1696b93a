"""The same seed gives the same files: fitting the diffusion generators twice gives bitwise-equal
state tensors, and generating twice from the saved state gives byte-equal PNGs, whatever the
global torch RNG holds (tiny model, real bottle few-shot images at 32 px, seconds each).

Everything here runs on the CPU, where torch's kernels are deterministic at a fixed thread count,
so the comparisons are exact: a difference is a random draw the code does not control.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from anomalyforge.diffusion.textual_inversion import add_placeholder_tokens, init_vectors
from anomalyforge.seeds import pair_seed
from anomalyforge.synth.anomalydiffusion import AnomalyDiffusion
from anomalyforge.synth.dualanodiff import DualAnoDiff
from anomalyforge.synth.gaa import GAA

SIZE = 32  # conftest's image side


def _ad(tiny_model: Path, **kw):
    params = dict(base_model=str(tiny_model), device="cpu", resolution=SIZE, fit_steps=2, mask_fit_steps=1,
                  train_batch=2, sampler_steps=2, spatial_backbone="tiny", spatial_fpn_channels=16,
                  mask_tries=1, progress=False, seed=3)
    params.update(kw)
    return AnomalyDiffusion.make_config(params)


def _gaa(tiny_model: Path, **kw):
    params = dict(base_model=str(tiny_model), device="cpu", resolution=SIZE, fit_steps=2, train_batch=2,
                  sampler_steps=2, spatial_backbone="tiny", spatial_fpn_channels=16, progress=False,
                  cluster=False, seed=3)
    params.update(kw)
    return GAA.make_config(params)


def _dual(tiny_model: Path, **kw):
    params = dict(base_model=str(tiny_model), device="cpu", resolution=SIZE, rank=4, fit_steps=2, train_batch=2,
                  sampler_steps=2, lr=1e-3, progress=False, seed=3)
    params.update(kw)
    return DualAnoDiff.make_config(params)


MAKERS = {"anomalydiffusion": (AnomalyDiffusion, _ad), "gaa": (GAA, _gaa), "dualanodiff": (DualAnoDiff, _dual)}


def _state(state: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Every tensor of every safetensors file of a state folder, and the final losses."""
    tensors = {f"{f.name}:{k}": v for f in sorted(state.glob("*.safetensors")) for k, v in load_file(str(f)).items()}
    meta = json.loads(next(p for p in state.glob("*.json") if p.stem in MAKERS).read_text())
    return tensors, meta["final_loss"]


def _fit(method: str, tiny_model: Path, data, state: Path):
    cls, make = MAKERS[method]
    gen = cls(make(tiny_model))
    before = torch.get_rng_state()
    gen.fit(data, state)
    # nothing in fitting draws from (or advances) the global torch RNG: initialisations are seeded
    assert torch.equal(torch.get_rng_state(), before)
    return gen


def _png(arr: np.ndarray) -> bytes:
    """The bytes `atomic.write_png_atomic` writes for `arr`."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(arr, cv2.COLOR_RGB2BGR) if arr.ndim == 3 else arr)
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize("method", ["anomalydiffusion", "dualanodiff", "gaa"])
def test_same_seed_same_state_and_pngs_whatever_the_global_rng(method, tiny_model, bottle_data, tmp_path):
    torch.manual_seed(7)
    _fit(method, tiny_model, bottle_data, tmp_path / "a")
    torch.manual_seed(123)  # another global RNG state (and another generator instance, model loaded anew)
    torch.randn(5)
    _fit(method, tiny_model, bottle_data, tmp_path / "b")
    (ta, la), (tb, lb) = _state(tmp_path / "a"), _state(tmp_path / "b")
    assert ta.keys() == tb.keys() and ta
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k
    assert la == lb

    cls, make = MAKERS[method]
    seeds = [pair_seed(0, "contamination", i) for i in range(2)]
    out = []
    for k, global_seed in enumerate((11, 12345)):
        torch.manual_seed(global_seed)
        gen = cls(make(tiny_model))
        gen.load(bottle_data, tmp_path / "ab"[k])  # each from its own fit's state
        before = torch.get_rng_state()
        pairs = gen.generate("contamination", seeds)
        assert torch.equal(torch.get_rng_state(), before)  # generation draws from the pair seeds only
        out.append([(_png(p.image), _png(p.mask), p.source) for p in pairs])
    assert out[0] == out[1]
    assert out[0][0][0] != out[0][1][0]  # two seeds, two images: the comparison is not vacuous


def test_placeholder_rows_do_not_depend_on_the_global_rng(tiny_model):
    """The rows `add_placeholder_tokens` adds are zeros (transformers would draw them from the global
    RNG), the global RNG is not advanced, and init_vectors' noise scale ignores those rows."""
    from anomalyforge.diffusion.loading import load_ldm

    starts, tables = [], []
    for k, names in enumerate((["<det-a>"], ["<det-a>", "<det-b>", "<det-c>"])):
        torch.manual_seed(k)
        ldm = load_ldm(tiny_model, device="cpu")  # a fresh model: the session fixture stays untouched
        base = ldm.text_encoder.get_input_embeddings().weight.detach().clone()
        before = torch.get_rng_state()
        ids = add_placeholder_tokens(ldm.tokenizer, ldm.text_encoder, names)
        assert torch.equal(torch.get_rng_state(), before)
        table = ldm.text_encoder.get_input_embeddings().weight.detach()
        assert torch.equal(table[: len(base)], base) and not table[ids].any()
        tables.append(base)
        starts.append(init_vectors(ldm.tokenizer, ldm.text_encoder, "anomaly", 2, torch.Generator().manual_seed(0)))
    assert torch.equal(tables[0], tables[1])
    assert torch.equal(starts[0], starts[1])  # the same start however many placeholders the table holds


def test_refitting_one_instance_gives_the_same_state(tiny_model, bottle_data, tmp_path):
    """A second fit on the same generator (model, tokenizer and injector kept from the first) is the first."""
    gen = _fit("anomalydiffusion", tiny_model, bottle_data, tmp_path / "a")
    torch.manual_seed(99)
    gen.fit(bottle_data, tmp_path / "b")
    (ta, la), (tb, lb) = _state(tmp_path / "a"), _state(tmp_path / "b")
    assert all(torch.equal(ta[k], tb[k]) for k in ta) and la == lb
