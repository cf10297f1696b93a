"""A generated run as anomalib data: train anomalib's models on our runs in your own code.

`run_samples` lists a run folder (`run.json` + `manifest.jsonl`, `anomalyforge.formats`) in
anomalib's sample table (`image_path`, `mask_path`, `label_index`, `split`, plus `defect_type`);
`run_dataset` wraps one split of it as an `anomalib.data.AnomalibDataset` (items are anomalib
`ImageItem`s, batches `ImageBatch`es); `run_datamodule` gives the Lightning datamodule that
anomalib's `Engine` takes:

- train: the run's few-shot good training images (label 0); with `supervised=True` also the
  generated defect pairs (label 1, with their masks), for models that learn from defect masks
  (anomalib's `Supersimplenet(supervised=True)`).
- val: the generated defect pairs and the good training images: training data only, for
  anomalib's thresholds and score normalisation; no test image is ever read for it.
- test: the category's held-out real test split (defects and test goods), recomputed from the
  data root the run records (`formats.run.run_split`); the run's training files are checked
  against it first (`formats.run.check_training`).

Rejected pairs (`anomalyforge filter`) are left out. anomalib and pandas are imported when a
function is called.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from anomalyforge.errors import ConfigError, DataError
from anomalyforge.formats.manifest import open_run
from anomalyforge.formats.run import check_training, run_split

SPLITS = ("train", "val", "test")


def run_samples(run: str | Path, supervised: bool = False) -> Any:
    """anomalib's sample table (a pandas DataFrame) of a run folder; see the module doc."""
    import pandas as pd  # lazy: pandas comes with anomalib, only this adapter uses it

    r = open_run(run)
    split = run_split(run, r.info)
    check_training(run, r.info, split)
    good = [str(p) for p in r.info.good_images(Path(run) / "run.json")]
    pairs = [(str(Path(run) / p.image), str(Path(run) / p.mask), p.defect_type) for p in r.kept]
    rows: list[dict[str, Any]] = []

    def add(where: str, images: list[str], masks: list[str], label: int, types: list[str]) -> None:
        rows.extend({"image_path": i, "mask_path": m, "label_index": label, "split": where, "defect_type": t}
                    for i, m, t in zip(images, masks, types, strict=True))

    add("train", good, [""] * len(good), 0, ["good"] * len(good))
    if supervised:
        add("train", [p[0] for p in pairs], [p[1] for p in pairs], 1, [p[2] for p in pairs])
    add("val", [p[0] for p in pairs], [p[1] for p in pairs], 1, [p[2] for p in pairs])
    add("val", good, [""] * len(good), 0, ["good"] * len(good))
    test_good = [str(s.image) for s in split.test_good]
    add("test", test_good, [""] * len(test_good), 0, ["good"] * len(test_good))
    for t, samples in split.test_defects.items():
        add("test", [str(s.image) for s in samples], [str(s.mask) if s.mask else "" for s in samples], 1,
            [t] * len(samples))
    if not pairs:
        raise DataError(Path(run) / "manifest.jsonl", "the run holds no kept pairs")
    return pd.DataFrame(rows, columns=["image_path", "mask_path", "label_index", "split", "defect_type"])


def run_dataset(run: str | Path, split: str = "train", supervised: bool = False, samples: Any = None) -> Any:
    """One split ("train", "val", "test") of a run as an `anomalib.data.AnomalibDataset`
    (segmentation task: every defect image has its mask). `samples`: a table from `run_samples`."""
    from anomalib.data import AnomalibDataset  # lazy: anomalib is heavy to import

    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    table = run_samples(run, supervised) if samples is None else samples
    ds = AnomalibDataset()
    part = table[table["split"] == split].reset_index(drop=True)
    part.attrs["task"] = "segmentation"  # anomalib reads the task from the table's attrs
    ds.samples = part
    ds.category = open_run(run).info.category
    return ds


@functools.cache
def _datamodule_class() -> type:
    from anomalib.data import AnomalibDataModule  # lazy: anomalib is heavy to import

    class GeneratedRunDataModule(AnomalibDataModule):
        """anomalib datamodule of an anomalyforge run (see `anomalyforge.inspect.anomalib_data`)."""

        def __init__(self, run: str | Path, supervised: bool = False, train_batch_size: int = 8,
                     eval_batch_size: int = 8, num_workers: int = 0, seed: int | None = None,
                     **kwargs: Any) -> None:
            super().__init__(train_batch_size=train_batch_size, eval_batch_size=eval_batch_size,
                             num_workers=num_workers, val_split_mode="from_dir", test_split_mode="from_dir",
                             seed=seed, **kwargs)
            self.run, self.supervised = Path(run), supervised

        def _setup(self, _stage: str | None = None) -> None:
            table = run_samples(self.run, self.supervised)
            self.train_data, self.val_data, self.test_data = (
                run_dataset(self.run, s, self.supervised, samples=table) for s in SPLITS)

    return GeneratedRunDataModule


def run_datamodule(run: str | Path, supervised: bool = False, train_batch_size: int = 8, eval_batch_size: int = 8,
                   num_workers: int = 0, seed: int | None = None, **kwargs: Any) -> Any:
    """The run as an `anomalib.data.AnomalibDataModule` for anomalib's `Engine` (splits in the
    module doc); extra keyword arguments (augmentations) go to anomalib's datamodule."""
    if not (Path(run) / "run.json").is_file():
        raise DataError(Path(run) / "run.json", "not a generated run folder (run.json missing)")
    return _datamodule_class()(run, supervised, train_batch_size, eval_batch_size, num_workers, seed, **kwargs)
