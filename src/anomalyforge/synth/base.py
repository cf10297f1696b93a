"""The generator interface every synthesis method implements, and the registry that finds them.

A generator learns from the few-shot *training* split only (`FitData`), saves what it learned
in a state folder, and produces defect image–mask pairs deterministically from integer seeds.
The run machinery (`anomalyforge.synth.run`) owns folders, manifests, atomic writes and resume;
a generator only turns (defect_type, seed) into a `Pair`.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from anomalyforge.data.fitdata import FitData
from anomalyforge.errors import ConfigError


@dataclass
class Pair:
    """One generated defect: RGB image (H, W, 3) uint8, mask (H, W) uint8 {0, 255} marking exactly
    the changed region, the good image it was painted on, and the parameters drawn for it."""

    image: np.ndarray
    mask: np.ndarray
    source: str
    params: dict[str, Any] = field(default_factory=dict)


class Generator(ABC):
    """Base class of all synthesis methods.

    Subclasses set `name`, a `Config` dataclass whose defaults are the paper's values, and
    implement `fit`, `load` and `generate`. `generate(defect_type, seeds)` must return one pair
    per seed and depend on nothing but the fitted state and the seed (so runs resume
    byte-identically). `batch_size` tells the run machinery how many seeds to pass at once.
    `keep_ratio` (None: no filtering) is the method's default share of pairs kept by the ARS
    quality filter after generation: `generate_run` then generates n / keep_ratio per type.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type] = dataclass(type("EmptyConfig", (), {}))
    batch_size: ClassVar[int] = 1
    keep_ratio: ClassVar[float | None] = None

    def __init__(self, config: Any | None = None) -> None:
        self.config = config if config is not None else self.Config()
        self.data: FitData | None = None

    @classmethod
    def make_config(cls, overrides: dict[str, Any] | None = None) -> Any:
        """Build the config from defaults plus `overrides`; unknown keys are a clear error."""
        overrides = dict(overrides or {})
        names = {f.name for f in dataclasses.fields(cls.Config)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ConfigError(f"method {cls.name!r} has no parameter(s) {', '.join(unknown)}; "
                              f"known: {', '.join(sorted(names))}")
        return cls.Config(**overrides)

    def config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

    @abstractmethod
    def fit(self, data: FitData, state_dir: Path) -> None:
        """Learn from `data` (training split only) and save the state under `state_dir`."""

    def fit_parts(self, data: FitData) -> list[str]:
        """The independent pieces `fit` is made of, which a run fits one by one (resuming at a
        piece) and a distributed run fits as parallel tasks: one per defect type for a method that
        trains each type on its own. [] (the default): `fit` is one piece."""
        return []

    def fit_part(self, data: FitData, part: str, part_dir: Path) -> None:
        """Fit the piece `part` of `fit_parts(data)` alone and save it under `part_dir`."""
        raise ConfigError(f"method {self.name!r} fits in one piece; it has no part {part!r}")

    def join_parts(self, data: FitData, part_dirs: dict[str, Path], state_dir: Path) -> None:
        """Write under `state_dir` the state `fit` writes, from the pieces saved by `fit_part`."""
        raise ConfigError(f"method {self.name!r} fits in one piece; it has no parts to join")

    @abstractmethod
    def load(self, data: FitData, state_dir: Path) -> None:
        """Restore the state saved by `fit` (the good images are served again by `data`)."""

    @abstractmethod
    def generate(self, defect_type: str, seeds: Sequence[int]) -> list[Pair]:
        """One pair per seed for `defect_type`; deterministic in the seed."""


_REGISTRY: dict[str, type[Generator]] = {}


def register(cls: type[Generator]) -> type[Generator]:
    """Class decorator adding a generator to the registry under `cls.name`."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    _REGISTRY[cls.name] = cls
    return cls


# model-free first: no torch needed to use them
_MODULES = ("model_free", "mixture", "anomalydiffusion", "gaa", "dualanodiff")


def _load_builtin(want: str | None = None) -> None:
    """Import the built-in generator modules (importing registers them). With `want`, stop as
    soon as it is registered, so model-free methods never pay for importing the diffusion stack."""
    import importlib  # lazy: generator modules register on import; the diffusion ones pull in diffusers

    for mod in _MODULES:
        if want is not None and want in _REGISTRY:
            return
        try:
            importlib.import_module(f"anomalyforge.synth.{mod}")
        except ModuleNotFoundError as exc:  # an optional module that is not installed
            if exc.name != f"anomalyforge.synth.{mod}":
                raise


def available() -> list[str]:
    """Names of every registered generator."""
    _load_builtin()
    return sorted(_REGISTRY)


def get_generator(name: str) -> type[Generator]:
    """The generator class registered under `name`, or a ConfigError listing the known names."""
    _load_builtin(name)
    try:
        return _REGISTRY[name]
    except KeyError:
        _load_builtin()
        raise ConfigError(f"unknown method {name!r}; available: {', '.join(sorted(_REGISTRY))}") from None
