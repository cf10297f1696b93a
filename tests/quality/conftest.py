"""Real bottle data for the quality tests, and one small ARS discriminator trained once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from qualitydata import SMALL_ARS, one_thread

from anomalyforge.data import few_shot_split, load_dataset
from anomalyforge.data.io import read_image, read_mask
from anomalyforge.quality.ars import train_or_load


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


@pytest.fixture(scope="session")
def bottle_split(bottle_dir: Path):
    return few_shot_split(load_dataset(bottle_dir), progress=False)


@pytest.fixture(scope="session")
def ars_cache(bottle_split, tmp_path_factory) -> Path:
    """A discriminator trained on bottle's good *training* images, saved in a cache folder."""
    cache = tmp_path_factory.mktemp("ars") / "ars"
    with one_thread():
        train_or_load([s.image for s in bottle_split.train_good], cache, SMALL_ARS, seed=0, progress=False)
    return cache


@pytest.fixture(scope="session")
def ars_scorer(ars_cache):
    from anomalyforge.quality.ars import ARSScorer

    with one_thread():
        return ARSScorer.load(ars_cache)


@pytest.fixture(scope="session")
def bottle_pairs(bottle_split):
    """Held-out real defects (image, true mask) of every type, and good test images.

    Test defects are used so nothing the discriminator or generators learn from is scored.
    """
    real = []
    for t in sorted(bottle_split.test_defects):
        for s in bottle_split.test_defects[t][:3]:
            real.append((read_image(s.image, 256), read_mask(s.mask, 256)))
    good = [read_image(s.image, 256) for s in bottle_split.test_good[: len(real)]]
    return real, good


@pytest.fixture(scope="session")
def small_bottle(bottle_dir: Path, tmp_path_factory) -> Path:
    """bottle in MVTec layout with fewer real files (symlinks): 4 good training images and the first
    12 images of two defect types, so each type has 4 few-shot training defects (enough to cluster)."""
    root = tmp_path_factory.mktemp("small") / "bottle"
    for p in sorted((bottle_dir / "train" / "good").glob("*.png"))[:4]:
        (root / "train" / "good").mkdir(parents=True, exist_ok=True)
        (root / "train" / "good" / p.name).symlink_to(p)
    for p in sorted((bottle_dir / "test" / "good").glob("*.png"))[:2]:
        (root / "test" / "good").mkdir(parents=True, exist_ok=True)
        (root / "test" / "good" / p.name).symlink_to(p)
    for t in ("broken_large", "contamination"):
        (root / "test" / t).mkdir(parents=True)
        (root / "ground_truth" / t).mkdir(parents=True)
        for p in sorted((bottle_dir / "test" / t).glob("*.png"))[:12]:
            (root / "test" / t / p.name).symlink_to(p)
            m = bottle_dir / "ground_truth" / t / f"{p.stem}_mask.png"
            (root / "ground_truth" / t / m.name).symlink_to(m)
    return root
