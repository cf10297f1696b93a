"""Segmentation losses for the defect-map models: focal (DRAEM), BCE and soft Dice."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from anomalyforge.errors import ConfigError


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0, alpha: float = 0.5) -> torch.Tensor:
    """Binary focal loss on logits (down-weights the many easy background pixels)."""
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p = torch.sigmoid(logits)
    pt = p * target + (1 - p) * (1 - target)
    w = alpha * target + (1 - alpha) * (1 - target)
    return (2.0 * w * (1 - pt).pow(gamma) * bce).mean()


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft Dice over the whole batch (stable when some samples are defect-free)."""
    p = torch.sigmoid(logits)
    inter = (p * target).sum()
    return 1 - (2 * inter + eps) / (p.sum() + target.sum() + eps)


def seg_loss(name: str, logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Loss by name: "focal", "bce", "focal+dice", "bce+dice"."""
    parts = name.split("+")
    total = logits.new_zeros(())
    for part in parts:
        if part == "focal":
            total = total + focal_loss(logits, target, gamma)
        elif part == "bce":
            total = total + F.binary_cross_entropy_with_logits(logits, target)
        elif part == "dice":
            total = total + dice_loss(logits, target)
        else:
            raise ConfigError(f"unknown loss {part!r}; use focal, bce, dice joined by '+'")
    return total
