"""anomalyforge.data: dataset readers, the few-shot protocol and image/mask IO.

    ds = load_dataset("datasets/mvtec_ad/bottle")      # layout auto-detected
    split = few_shot_split(ds)                         # 1/3 of each defect type for training
    data = fit_data(split, size=256)                   # what a generator may learn from
"""

from anomalyforge.data.fewshot import DataWarning, few_shot_split, fit_data, good_subset, n_train, train_masks
from anomalyforge.data.load import detect_format, find_categories, get_reader, load_dataset, load_datasets
from anomalyforge.data.natsort import natural_key, natural_sorted
from anomalyforge.data.readers import FORMATS
from anomalyforge.data.types import Dataset, FewShotSplit, Sample

__all__ = [
    "DataWarning", "Dataset", "FORMATS", "FewShotSplit", "Sample", "detect_format", "few_shot_split",
    "find_categories", "fit_data", "get_reader", "good_subset", "load_dataset", "load_datasets",
    "n_train", "natural_key", "natural_sorted", "train_masks",
]
