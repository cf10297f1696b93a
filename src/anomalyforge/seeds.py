"""Named seed streams: every random choice in the toolkit draws from (seed, stream).

A pair's seed (`pair_seed`) comes from the run seed, the defect type and the pair's index, so a
pair does not depend on which other pairs a run makes. Each kind of random choice made for that
pair then draws from its own stream, so adding a draw to one kind never shifts another:

========================  ======  ==========================================================
stream                    value   what draws from it
========================  ======  ==========================================================
``NOISE``                 0       diffusion sampling noise of a pair's image (AnomalyDiffusion,
                                  GAA); DualAnoDiff uses ``2·attempt + branch``
``MASK_NOISE``            1       diffusion sampling noise of a mask made by textual inversion
``MASK``                  2       synthesised masks (morphology, placement) of diffusion pairs
``GOOD_IMAGE``            3       the good image a diffusion pair is painted on
``SUBTYPE``               4       the anomaly concept (sub-type) a GAA pair is drawn from
``SHOTS``                 7       the K good images of a few-shot detection draw
``TAB``                   8       TAB pretraining: the good images used per class, each epoch's order
``DETECTOR``              9       an anomalib detector's initial weights, random projections and
                                  training-batch order (``inspect.anomalib_detectors``)
``METHOD``                10      the generator a ``mixture`` pair is drawn from
``REFERENCE_NOISE``       100     noise of DualAnoDiff's background reference pass (+ 2·attempt)
``BACKGROUND``            0xBC    the good image whose background DualAnoDiff's BCM uses
``GOOD_VAE_FIT``          0x600D  training crops and posterior noise of the VAE fitted on K good
                                  images (TVG goods without a pretrained autoencoder)
``GOOD_VAE_INIT``         0x600E  initial weights of that VAE
========================  ======  ==========================================================

Index-like streams (a model-free pair's placement attempt, the i-th generated good image, a
fitting loop's defect type) use the index itself: ``numpy_rng(seed, attempt)``.
"""

from __future__ import annotations

import zlib
from enum import IntEnum

import numpy as np
import torch


class Stream(IntEnum):
    """The named seed streams (see the module docstring for who draws from which)."""

    NOISE = 0
    MASK_NOISE = 1
    MASK = 2
    GOOD_IMAGE = 3
    SUBTYPE = 4
    SHOTS = 7
    TAB = 8
    DETECTOR = 9
    METHOD = 10
    REFERENCE_NOISE = 100
    BACKGROUND = 0xBC
    GOOD_VAE_FIT = 0x600D
    GOOD_VAE_INIT = 0x600E


def numpy_rng(seed: int, stream: int) -> np.random.Generator:
    """numpy Generator for (seed, stream): ``default_rng([seed, stream])``."""
    return np.random.default_rng([int(seed), int(stream)])


def torch_generator(seed: int, stream: int) -> torch.Generator:
    """CPU torch Generator for (seed, stream), seeded from the same SeedSequence as `numpy_rng`."""
    state = np.random.SeedSequence([int(seed), int(stream)]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def pair_seed(run_seed: int, defect_type: str, index: int) -> int:
    """The seed of one pair: SeedSequence(run_seed, spawn_key=(crc32(type), index)) -> 63-bit int.

    Independent of which other types are generated and of the order, so runs resume and extend.
    """
    ss = np.random.SeedSequence(int(run_seed), spawn_key=(zlib.crc32(defect_type.encode()), int(index)))
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))
