"""The named seed streams (anomalyforge.seeds): one stream per kind of random choice, distinct
values, and the values the module documents (published runs are reproduced from them)."""

from __future__ import annotations

import re

import numpy as np

import anomalyforge.seeds as seeds
from anomalyforge.seeds import Stream, numpy_rng, pair_seed, torch_generator


def test_every_stream_has_its_own_value():
    # an IntEnum member given another member's value silently becomes its alias: two kinds of
    # draw (e.g. a pair's mask and its good image) would then come from one stream
    assert len(set(Stream.__members__.values())) == len(Stream.__members__) == 13
    draws = {s.name: numpy_rng(5, s).integers(0, 2**62, 4).tolist() for s in Stream}
    assert len({tuple(v) for v in draws.values()}) == len(draws)


def test_stream_values_are_the_documented_ones():
    table = dict(re.findall(r"``([A-Z_]+)``\s+(0x[0-9A-Fa-f]+|\d+)\s", seeds.__doc__ or ""))
    assert set(table) == set(Stream.__members__)
    assert {k: int(v, 0) for k, v in table.items()} == {s.name: int(s) for s in Stream}


def test_generators_of_one_seed_and_stream_agree_and_differ_across_streams():
    a, b = numpy_rng(3, Stream.MASK), numpy_rng(3, Stream.MASK)
    assert a.integers(0, 1000, 8).tolist() == b.integers(0, 1000, 8).tolist()
    assert not np.array_equal(numpy_rng(3, Stream.MASK).random(8), numpy_rng(3, Stream.GOOD_IMAGE).random(8))
    t1, t2 = torch_generator(3, Stream.NOISE).initial_seed(), torch_generator(3, Stream.MASK_NOISE).initial_seed()
    assert t1 == torch_generator(3, Stream.NOISE).initial_seed() and t1 != t2
    # a pair's seed depends on its type and index only, not on the order pairs are made in
    assert pair_seed(0, "crack", 1) == pair_seed(0, "crack", 1) != pair_seed(0, "crack", 2)
    assert pair_seed(0, "crack", 1) != pair_seed(0, "scratch", 1) and pair_seed(0, "crack", 1) < 2**63
