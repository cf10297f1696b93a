"""A mixture of generators: each pair comes from one of `methods`, drawn per seed.

Why: a category often has structural and logical defects at once (MVTec LOCO) and no single
model-free method makes both; a mixture trains the localiser on both kinds. Each seed draws its
method uniformly from the `METHOD` stream, then that method makes the pair from the same seed,
so a mixture's pair is exactly the pair its method would have made for that seed (and
`pipelines.select` can build a mixture's pairs from its members' without generating twice).
Each member is fitted in its own sub-folder of the state folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from anomalyforge.data.fitdata import FitData
from anomalyforge.errors import ConfigError
from anomalyforge.seeds import Stream, numpy_rng
from anomalyforge.synth.base import Generator, Pair, get_generator, register

DEFAULT_MEMBERS = "croppaste,logical"


@dataclass
class MixtureConfig:
    """`methods`: comma-separated generator names (each with its default settings)."""

    methods: str = DEFAULT_MEMBERS


def members(spec: str) -> list[str]:
    """The member names of a mixture spec, checked (known, not a mixture, at least two)."""
    names = list(dict.fromkeys(m.strip() for m in str(spec).split(",") if m.strip()))
    if len(names) < 2 or "mixture" in names:
        raise ConfigError(f"mixture methods {spec!r}: name two or more other generators")
    for n in names:
        get_generator(n)
    return names


def member_of(seed: int, n_members: int) -> int:
    """Index of the member that makes the pair of `seed`."""
    return int(numpy_rng(seed, Stream.METHOD).integers(n_members))


@register
class Mixture(Generator):
    """Pairs drawn from several generators (default croppaste and logical)."""

    name = "mixture"
    Config = MixtureConfig
    batch_size = 16

    @classmethod
    def make_config(cls, overrides: dict | None = None) -> MixtureConfig:
        cfg = super().make_config(overrides)
        members(cfg.methods)
        return cfg

    def _members(self) -> list[Generator]:
        if not hasattr(self, "_gens"):
            out = []
            for n in members(self.config.methods):
                cls = get_generator(n)
                out.append(cls(cls.make_config()))
            self._gens = out
        return self._gens

    def fit(self, data: FitData, state_dir: Path) -> None:
        """Fit every member in `state_dir/<member>`."""
        self.data = data
        for g in self._members():
            g.fit(data, Path(state_dir) / g.name)

    def load(self, data: FitData, state_dir: Path) -> None:
        """Restore every member from `state_dir/<member>`."""
        self.data = data
        for g in self._members():
            g.load(data, Path(state_dir) / g.name)

    def generate(self, defect_type: str, seeds: Sequence[int]) -> list[Pair]:
        if self.data is None:
            raise ConfigError(f"generator {self.name!r} used before fit/load")
        gens = self._members()
        pick = [member_of(s, len(gens)) for s in seeds]
        out: list[Pair | None] = [None] * len(seeds)
        for k, g in enumerate(gens):
            idx = [i for i, p in enumerate(pick) if p == k]
            if idx:
                for i, pair in zip(idx, g.generate(defect_type, [seeds[i] for i in idx]), strict=True):
                    pair.params["method"] = g.name
                    out[i] = pair
        return [p for p in out if p is not None]
