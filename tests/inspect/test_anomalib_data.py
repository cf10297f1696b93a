"""A generated run as anomalib data: the sample table, the datasets and the datamodule, whose
batches anomalib's models accept (one-class training on goods; supervised with defect masks)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from anomalyforge.errors import ConfigError, DataError
from anomalyforge.inspect.anomalib_data import run_datamodule, run_dataset, run_samples


@pytest.fixture(scope="module")
def run(bottle_dir: Path, tmp_path_factory) -> Path:
    """A crop-paste run (2 pairs per type) on 6 good and 2 x 3 defect bottle images (links)."""
    from anomalyforge.synth.run import generate_run

    root = tmp_path_factory.mktemp("ad") / "bottle"
    for sub, n in (("train/good", 6), ("test/good", 2)):
        for p in sorted((bottle_dir / sub).glob("*.png"))[:n]:
            (root / sub).mkdir(parents=True, exist_ok=True)
            os.symlink(p, root / sub / p.name)
    for t in ("broken_large", "contamination"):
        for p in sorted((bottle_dir / "test" / t).glob("*.png"))[:3]:
            for d, name in (("test", p.name), ("ground_truth", f"{p.stem}_mask.png")):
                (root / d / t).mkdir(parents=True, exist_ok=True)
                os.symlink((p if d == "test" else bottle_dir / d / t / name), root / d / t / name)
    out = root.parent / "run"
    generate_run(root, out, method="croppaste", n=2, size=64, progress=False)
    return out


def test_run_samples_splits_goods_pairs_and_the_held_out_test(run):
    t = run_samples(run)
    counts = t.groupby(["split", "label_index"]).size().to_dict()
    # 6 good training images; 4 generated pairs (2 per type); test: 2 goods + 2 held-out defects per type
    assert counts == {("train", 0): 6, ("val", 0): 6, ("val", 1): 4, ("test", 0): 2, ("test", 1): 4}
    assert all(Path(p).is_file() for p in t["image_path"]) and all(Path(m).is_file() for m in t[t.label_index == 1]
                                                                   ["mask_path"])
    assert not set(t[t.split == "test"].image_path) & set(t[t.split != "test"].image_path)  # no test leak
    sup = run_samples(run, supervised=True)
    assert sup.groupby(["split", "label_index"]).size().to_dict()[("train", 1)] == 4


def test_datamodule_batches_train_anomalib_models(run):
    from anomalib.data import ImageBatch
    from torchvision.transforms.v2 import Compose, Normalize, Resize

    from anomalyforge.features.backbone import IMAGENET_MEAN, IMAGENET_STD
    from anomalyforge.inspect.anomalib_detectors import DetectorConfig, build_module, seeded

    aug = Compose([Resize((64, 64)), Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    dm = run_datamodule(run, train_batch_size=3, eval_batch_size=4, augmentations=aug)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, ImageBatch) and batch.image.shape == (3, 3, 64, 64)
    assert batch.gt_label.tolist() == [0, 0, 0]
    test = next(iter(dm.test_dataloader()))
    assert test.gt_mask.shape == (4, 64, 64) and set(test.gt_label.tolist()) <= {0, 1}

    with seeded(0):  # an anomalib model takes the batches as they come
        padim = build_module("padim", DetectorConfig(size=64))
    for b in dm.train_dataloader():
        padim.training_step(b)
    padim.fit()
    out = padim.eval().validation_step(test)
    assert out.anomaly_map.shape[-2:] == (64, 64) and torch.isfinite(out.pred_score).all()

    sup = run_datamodule(run, supervised=True, train_batch_size=16, augmentations=aug)
    sup.setup()
    (b,) = list(sup.train_dataloader())
    labels = b.gt_label.numpy()
    assert sorted(labels.tolist()) == [0] * 6 + [1] * 4
    assert b.gt_mask[labels == 1].flatten(1).any(1).all() and not b.gt_mask[labels == 0].any()  # masks train too


def test_bad_input_is_one_line(run, tmp_path):
    with pytest.raises(ConfigError, match="split must be one of"):
        run_dataset(run, "validation")
    with pytest.raises(DataError, match="run.json"):
        run_datamodule(tmp_path)
