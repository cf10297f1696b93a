"""Deterministic shards of a generation run: which pairs shard I of N draws.

A run's pairs are cut into blocks of the generator's batch size within each defect type (pair
`i` of type `k` in `types` order is in block ``i // batch``); block `j` of type `k` belongs to
shard ``(k + j) mod N``. Shard I of N therefore draws exactly the pairs a single-process run
draws (same ids, same seeds, the same batches, so even a batched diffusion sampler gives the same
bytes), the N shards together draw each pair once, and the assignment of a pair does not change
when a larger `n` extends the run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from anomalyforge.errors import ConfigError
from anomalyforge.formats.manifest import shard_manifest_name


@dataclass(frozen=True)
class Shard:
    """Shard `index` (0 .. count − 1) of `count`."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ConfigError(f"shard {self.index}/{self.count}: expected I/N with N >= 1 and 0 <= I < N")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def manifest(self) -> str:
        """The file, relative to the run folder, holding this shard's records."""
        return shard_manifest_name(self.index, self.count)

    def owns(self, type_pos: int, index: int, block: int) -> bool:
        """Whether pair `index` of the `type_pos`-th defect type is this shard's (see module doc)."""
        return (type_pos + index // max(1, block)) % self.count == self.index


def parse_shard(text: str | Shard) -> Shard:
    """'I/N' (e.g. '0/4') as a Shard; ConfigError on anything else."""
    if isinstance(text, Shard):
        return text
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m:
        raise ConfigError(f"--shard {text!r}: expected I/N, e.g. 0/4 (shards are numbered 0 .. N-1)")
    return Shard(int(m.group(1)), int(m.group(2)))


def shard_pairs(types: list[str], counts: dict[str, int], block: int, shard: Shard | None) -> list[tuple[str, int]]:
    """(type, index) of the pairs `shard` draws (every pair when None), in pair order."""
    return [(t, i) for k, t in enumerate(types) for i in range(counts[t])
            if shard is None or shard.owns(k, i, block)]
