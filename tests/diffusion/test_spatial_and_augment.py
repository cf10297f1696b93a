"""Spatial encoder shapes/backbones and the joint image+mask augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anomalyforge.diffusion.augment import augment_pair
from anomalyforge.diffusion.spatial_encoder import SpatialEncoder
from anomalyforge.errors import ConfigError


@pytest.mark.parametrize("backbone", ["tiny", "resnet18"])
def test_spatial_encoder_maps_masks_to_tokens(backbone):
    torch.manual_seed(0)
    enc = SpatialEncoder(n_tokens=4, dim=32, backbone=backbone, fpn_channels=16)
    m = torch.zeros(2, 1, 64, 64)
    m[0, :, 5:20, 5:20] = 1
    m[1, :, 40:60, 30:50] = 1
    out = enc(m)
    assert out.shape == (2, 4, 32)
    assert not torch.allclose(out[0], out[1])  # different locations, different embeddings
    out.sum().backward()
    assert all(p.grad is not None for p in enc.heads.parameters())


def test_spatial_encoder_bad_backbone_and_weights(tmp_path):
    with pytest.raises(ConfigError, match="unknown spatial encoder backbone 'vgg'"):
        SpatialEncoder(backbone="vgg")
    bad = tmp_path / "w.pth"
    torch.save({"nope": torch.zeros(1)}, bad)
    with pytest.raises(ConfigError, match="w.pth: not resnet18 weights"):
        SpatialEncoder(backbone="resnet18", weights=str(bad))


def test_augmentation_moves_image_and_mask_together_keeping_the_defect():
    rng = np.random.default_rng(0)
    mask = np.zeros((64, 64), np.uint8)
    mask[20:34, 26:40] = 255
    image = np.zeros((64, 64, 3), np.uint8)
    image[mask > 0] = 200  # the "defect" is painted exactly where the mask is
    changed = 0
    for _ in range(10):
        img2, m2 = augment_pair(image, mask, rng, p=1.0, max_rotation=20)
        assert img2.shape == image.shape and m2.shape == mask.shape
        assert (m2 > 0).sum() >= (mask > 0).sum() * 0.9  # the defect stays in the frame
        inside = img2[..., 0][m2 > 0]
        assert inside.mean() > 150  # and the image moved with the mask
        ys, xs = np.nonzero(m2)
        assert ys.min() >= 0 and ys.max() <= 63 and xs.max() <= 63
        changed += not np.array_equal(m2, mask)
    assert changed >= 8
    # with the official probability 1/2 about half the pairs stay as they are
    same = sum(np.array_equal(augment_pair(image, mask, rng)[1], mask) for _ in range(40))
    assert 10 <= same <= 30


def test_spatial_encoder_keeps_position():
    # the same square moved by 32 px (the coarsest stride, far from the border, where globally pooled
    # features are blind to a shift) must move the embedding more than turning the square into a disk
    # of the same area in place. (The old pooled encoder failed this: moved 0.04-0.07, reshaped 0.08-0.12.)
    yy, xx = torch.meshgrid(torch.arange(128), torch.arange(128), indexing="ij")
    square_a = ((yy - 48).abs() <= 8) & ((xx - 48).abs() <= 8)  # 17x17 = 289 px at (48, 48)
    square_b = ((yy - 80).abs() <= 8) & ((xx - 80).abs() <= 8)  # the same square at (80, 80)
    disk_a = (yy - 48) ** 2 + (xx - 48) ** 2 <= 92  # a 293-px disk at (48, 48)
    for seed in range(3):  # untrained encoders: position is kept by construction
        torch.manual_seed(seed)
        enc = SpatialEncoder(n_tokens=4, dim=32, backbone="tiny", fpn_channels=16).eval()
        with torch.no_grad():
            e = enc(torch.stack([square_a, square_b, disk_a]).float()[:, None])
        moved = (e[0] - e[1]).norm()
        reshaped = (e[0] - e[2]).norm()
        assert moved > 1.3 * reshaped, (seed, float(moved), float(reshaped))
