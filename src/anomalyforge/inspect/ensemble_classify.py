"""The defect-type classifier that averages the whole-image and the map-region classifiers
(`cls_input="ensemble"`).

Why: the two look at different evidence (the fine-tuned CNN at the whole part, learnt from
generated pairs and real defects; the region classifier at frozen features inside the region the
map marks, learnt from the real defects' k-fold maps), so where one is unsure the other often is
not. Their softmax probabilities are averaged with equal weights: no weight is fitted, so the
ensemble costs no training beyond its two members, and `inspect.classifier_choice` scores it on
the same k folds from the members' own fold predictions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from anomalyforge.inspect.classify import DefectClassifier
from anomalyforge.inspect.region_classify import RegionClassifier, RegionDefectClassifier


def average_probs(*probs: np.ndarray) -> np.ndarray:
    """The members' (N, K) probabilities averaged with equal weights (the ensemble's rule)."""
    return (np.sum(probs, axis=0) / len(probs)).astype(np.float32)


class EnsembleNet(nn.Module):
    """The two members as one module (`image`: the CNN, `region`: a `RegionClassifier`), so the model
    folder stores them under one prefix; `probs` is what the exported graph computes."""

    def __init__(self, image: nn.Module, region: RegionClassifier) -> None:
        super().__init__()
        self.image = image
        self.region = region

    def probs(self, cls_image: torch.Tensor, image: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        """(N, 3, C, C), (N, 3, S, S) in [0, 1] and (N, S, S) maps -> (N, K) averaged probabilities."""
        return 0.5 * (torch.softmax(self.image(cls_image), 1) + torch.softmax(self.region(image, maps), 1))


@dataclass
class EnsembleDefectClassifier:
    """The average of a whole-image and a region classifier of the same labels."""

    image: DefectClassifier
    region: RegionDefectClassifier
    needs_maps = True

    def __post_init__(self) -> None:
        if list(self.image.labels) != list(self.region.labels):
            raise ValueError("ensemble members must share their labels")
        self.model = EnsembleNet(self.image.model, self.region.model)

    @property
    def labels(self) -> list[str]:
        return list(self.image.labels)

    def predict_proba(self, images: np.ndarray, maps: np.ndarray | None = None,
                      cls_images: np.ndarray | None = None) -> np.ndarray:
        """(N, S, S, 3) uint8 at the localiser's size and their (N, S, S) maps -> (N, K) probabilities;
        `cls_images`: the images at the CNN's own size when the caller resized them from the
        originals (as deployment does), else `images` are resized."""
        return average_probs(self.image.predict_proba(cls_images if cls_images is not None else images),
                             self.region.predict_proba(images, maps))

    def predict(self, images: np.ndarray, maps: np.ndarray | None = None) -> list[str]:
        """The predicted defect type per image (see `predict_proba`)."""
        return [self.labels[k] for k in self.predict_proba(images, maps).argmax(1)] if len(images) else []


__all__ = ["EnsembleDefectClassifier", "EnsembleNet", "average_probs"]
