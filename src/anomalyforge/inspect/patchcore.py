"""PatchCore (Roth et al., CVPR 2022): the no-synthesis baseline.

A memory bank of locally aware pretrained patch features from the good training images,
reduced by greedy coreset selection (on a random projection and, for CPU speed, on a seeded
random subsample of at most `candidates` patches, to at most `max_bank` entries); the map is the
distance of each test patch to its nearest bank entry, upsampled and Gaussian-smoothed (sigma 4).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter
from tqdm.auto import tqdm

from anomalyforge.errors import ConfigError
from anomalyforge.features.backbone import DEFAULT_ARCH, BackboneSpec, frozen_extractor, pick_device, to_tensor


def greedy_coreset(feats: torch.Tensor, n: int, projection: int, gen: torch.Generator,
                   progress: bool = False) -> torch.Tensor:
    """Indices of `n` rows chosen by greedy k-centre selection on a random projection of `feats`."""
    if n >= len(feats):
        return torch.arange(len(feats))
    x = feats.float()
    if projection and projection < x.shape[1]:
        proj = torch.randn(x.shape[1], projection, generator=gen) / projection ** 0.5
        x = x @ proj.to(x.device)
    sq = (x * x).sum(1)
    idx = [int(torch.randint(0, len(x), (1,), generator=gen))]
    c = x[idx[0]]
    min_d = sq - 2 * (x @ c) + c.dot(c)
    for _ in tqdm(range(n - 1), desc="coreset", disable=not progress, leave=False):
        i = int(torch.argmax(min_d))
        idx.append(i)
        c = x[i]
        torch.minimum(min_d, sq - 2 * (x @ c) + c.dot(c), out=min_d)
    return torch.tensor(idx)


class PatchCore:
    """Fit on good images, predict defect maps (nearest-neighbour patch distances)."""

    def __init__(self, levels: tuple[int, ...] = (2, 3), coreset: float = 0.1, projection: int = 64,
                 sigma: float = 4.0, seed: int = 0, device: str | None = None,
                 weights: str | None = "imagenet", batch_size: int = 16,
                 max_bank: int | None = 10000, candidates: int | None = 100000,
                 arch: str = DEFAULT_ARCH) -> None:
        if not 0 < coreset <= 1:
            raise ConfigError(f"PatchCore coreset fraction must be in (0, 1], got {coreset}")
        self.device = pick_device(device)
        self.extractor = frozen_extractor(BackboneSpec(arch, weights, tuple(levels)), self.device)
        self.coreset, self.projection, self.sigma, self.seed = coreset, projection, sigma, seed
        self.batch_size = batch_size
        self.max_bank, self.candidates = max_bank, candidates
        self.bank: torch.Tensor | None = None

    @torch.no_grad()
    def _patches(self, images: np.ndarray) -> torch.Tensor:
        """(N, 3, S, S) -> (N, D, h, w) locally aware features on the finest level's grid."""
        feats = self.extractor(to_tensor(images).to(self.device))
        grid = feats[0].shape[-2:]
        out = []
        for f in feats:
            f = F.avg_pool2d(f, 3, stride=1, padding=1)
            if f.shape[-2:] != grid:
                f = F.interpolate(f, size=grid, mode="bilinear", align_corners=False)
            out.append(f)
        return torch.cat(out, 1)

    def fit(self, images: np.ndarray, progress: bool = True) -> PatchCore:
        """Build the memory bank from good training images (N, S, S, 3) uint8."""
        if len(images) == 0:
            raise ConfigError("PatchCore needs at least one good training image")
        chunks = []
        for i in tqdm(range(0, len(images), self.batch_size), desc="patchcore features",
                      disable=not progress, leave=False):
            f = self._patches(images[i:i + self.batch_size])
            chunks.append(f.permute(0, 2, 3, 1).reshape(-1, f.shape[1]))
        feats = torch.cat(chunks)
        gen = torch.Generator().manual_seed(self.seed)
        n = max(1, int(round(len(feats) * self.coreset)))
        if self.max_bank:
            n = min(n, self.max_bank)
        if self.candidates and len(feats) > max(self.candidates, n):  # speed: seeded subsample first
            feats = feats[torch.randperm(len(feats), generator=gen)[: max(self.candidates, n)].to(feats.device)]
        idx = greedy_coreset(feats, n, self.projection, gen, progress)
        self.bank = feats[idx.to(feats.device)].contiguous()
        return self

    @torch.no_grad()
    def predict(self, images: np.ndarray, progress: bool = False, chunk: int = 4096) -> np.ndarray:
        """(N, S, S, 3) uint8 -> (N, S, S) float32 nearest-neighbour distance maps."""
        if self.bank is None:
            raise ConfigError("PatchCore.predict called before fit")
        size = images.shape[1:3]
        maps = []
        for i in tqdm(range(0, len(images), self.batch_size), desc="patchcore predict",
                      disable=not progress, leave=False):
            f = self._patches(images[i:i + self.batch_size])
            b, d, h, w = f.shape
            q = f.permute(0, 2, 3, 1).reshape(-1, d)
            dist = torch.cat([torch.cdist(q[j:j + chunk], self.bank).min(1).values
                              for j in range(0, len(q), chunk)])
            m = F.interpolate(dist.view(b, 1, h, w), size=size, mode="bilinear", align_corners=False)
            for k in range(b):
                maps.append(gaussian_filter(m[k, 0].cpu().numpy(), self.sigma).astype(np.float32))
        return np.stack(maps)
