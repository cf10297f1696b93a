"""A generation run's `run.json`: what was generated, from which exact training files, and whether
generation finished.

Schema (version 2; a file without `schema_version` is version 1 and still reads):

    schema_version  int          2
    method          str          generator name
    config          object       the generator's full config (free-form)
    data            str          absolute dataset root the run was made from
    format, category, types, n, seed, size, ratio, keep_ratio, version
    training        object|null  {"good": [FileRef], "defects": {type: [FileRef]}}: every few-shot
                                 training file the generator saw, path relative to `data` (posix;
                                 absolute when outside it) and the sha256 of its bytes (defects:
                                 also the mask's)
    expected_pairs  int|null     pairs (incl. ones the ARS filter rejects) the manifest will hold
    complete        bool|null    false while generating, true once generation (and filtering) ended

Every path a run stores is relative to its run folder (images, masks) or to the data root
(training files, each pair's source image), so a run reads the same from any working folder and
after the run folder moves. `check_training` refuses a run whose training files are not the
current few-shot split's (a changed mask moves an image between training and test: a leak).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from anomalyforge.atomic import write_text_atomic
from anomalyforge.data import few_shot_split, load_dataset
from anomalyforge.data.types import FewShotSplit, Sample
from anomalyforge.errors import DataError
from anomalyforge.formats.schema import SCHEMA_KEY, Document

RUN_JSON = "run.json"
SCHEMA_VERSION = 2


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def data_relative(path: str | Path, root: str | Path) -> str:
    """`path` relative to the data root `root` (posix), or absolute when it lies outside it.
    Symlinks are kept (no resolve), so a linked dataset stays under its root."""
    p, r = os.path.abspath(path), os.path.abspath(root)
    try:
        rel = os.path.relpath(p, r)
    except ValueError:  # another drive (Windows)
        return Path(p).as_posix()
    return Path(p).as_posix() if rel == ".." or rel.startswith(".." + os.sep) else Path(rel).as_posix()


@dataclass
class FileRef:
    """One training file: path (relative to the data root) and content hash; defects add their mask."""

    path: str
    sha256: str
    mask: str | None = None
    mask_sha256: str | None = None


@dataclass
class TrainingFiles:
    """The few-shot training files a run's generator saw: good images and defects per defect type."""

    good: list[FileRef] = field(default_factory=list)
    defects: dict[str, list[FileRef]] = field(default_factory=dict)


def record_training(good: Sequence[Sample], defects: Mapping[str, Sequence[Sample]],
                    root: str | Path) -> TrainingFiles:
    """Paths (relative to `root`) and sha256 of the given training samples."""
    def ref(s: Sample) -> FileRef:
        return FileRef(data_relative(s.image, root), sha256_file(s.image),
                       None if s.mask is None else data_relative(s.mask, root),
                       None if s.mask is None else sha256_file(s.mask))

    return TrainingFiles(good=[FileRef(data_relative(s.image, root), sha256_file(s.image)) for s in good],
                         defects={t: [ref(s) for s in v] for t, v in defects.items()})


@dataclass
class RunInfo(Document):
    """The typed `run.json` of a generation run (see the module docstring)."""

    FILE: ClassVar[str] = RUN_JSON
    VERSION: ClassVar[int] = SCHEMA_VERSION

    method: str
    category: str
    data: str
    size: int
    config: dict[str, Any] = field(default_factory=dict)
    format: str | None = None
    types: list[str] = field(default_factory=list)
    n: int = 0
    seed: int = 0
    ratio: float = 1 / 3
    keep_ratio: float | None = None
    version: str = ""
    training: TrainingFiles | None = None
    expected_pairs: int | None = None
    complete: bool | None = None
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    # ---- file access ------------------------------------------------------------------------
    @classmethod
    def read(cls, run: str | Path) -> RunInfo:
        """The run.json of the run folder `run`; DataError naming the file when it does not match."""
        run = Path(run)
        p = run / RUN_JSON
        if not p.is_file():
            if not run.is_dir():
                raise DataError(run, "run folder not found")
            raise DataError(run, "not a generation run (no run.json)")
        return cls.read_file(p, "run config")

    def write(self, run: str | Path) -> Path:
        """Write `run/run.json` atomically (sorted keys: the same run gives the same bytes)."""
        self.schema_version = SCHEMA_VERSION
        return write_text_atomic(Path(run) / RUN_JSON, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    # ---- paths ------------------------------------------------------------------------------
    def resolve(self, path: str | Path) -> Path:
        """A stored data path (relative to the data root, or absolute) as a usable path."""
        p = Path(path)
        return p if p.is_absolute() else Path(self.data) / p

    def identity(self) -> dict:
        """The keys that must match for a folder to be resumed or extended."""
        d = self.to_dict()
        return {k: d.get(k) for k in IDENTITY_KEYS}

    def good_images(self, where: str | Path) -> list[Path]:
        """The good training images the run used (DataError when it records none)."""
        if self.training is None or not self.training.good:
            raise DataError(where, "run.json records no good training images (made by an older anomalyforge? "
                                   "generate the run again)")
        return [self.resolve(f.path) for f in self.training.good]


# keys of run.json that must match for a folder to be extended/resumed
IDENTITY_KEYS = ("method", "config", "category", "seed", "size", "types", "training")


def run_split(run: str | Path, info: RunInfo | None = None) -> FewShotSplit:
    """The few-shot split of the category a run was generated from, recomputed from its data root
    (category, format and ratio as recorded): the run's training part and its test part."""
    info = info or RunInfo.read(run)
    if not info.data:
        raise DataError(Path(run) / RUN_JSON, "run.json names no data path")
    ds = load_dataset(Path(info.data), category=info.category, data_format=info.format)
    return few_shot_split(ds, ratio=float(info.ratio or 1 / 3), progress=False)


def check_training(run: str | Path, info: RunInfo, split: FewShotSplit, root: str | Path | None = None) -> None:
    """Refuse (DataError naming the first differing file) a run whose training files are not the
    training part of `split` (whose data root is `root`, default the run's): same files, same
    bytes. Only the defect types the run was made from are compared."""
    where = Path(run) / RUN_JSON
    if info.training is None:
        raise DataError(where, "run.json does not record its training files (made by an older anomalyforge); "
                               "generate the run again")
    root = Path(root if root is not None else info.data)
    now = record_paths(split, root, list(info.training.defects))

    def resolve(p: str) -> Path:
        q = Path(p)
        return q if q.is_absolute() else root / q

    recorded: list[tuple[str, FileRef]] = [(t, f) for t, v in info.training.defects.items() for f in v]
    recorded += [("good", f) for f in info.training.good]
    for kind, f in recorded:
        cur = now.get((kind, f.path))
        if cur is None:
            raise DataError(resolve(f.path), f"few-shot training file of the run ({kind}) is not in the current "
                                             f"training split: the data changed since the run was made")
        if cur.mask != f.mask:
            raise DataError(resolve(f.path), "its mask is not the one the run was made from")
        for p, h in ((f.path, f.sha256), (f.mask, f.mask_sha256)):
            if p is not None and (not resolve(p).is_file() or sha256_file(resolve(p)) != h):
                raise DataError(resolve(p), "few-shot training file changed since the run was made")
    seen = {(k, f.path) for k, f in recorded}
    for (kind, path), _ in now.items():
        if (kind, path) not in seen:
            raise DataError(resolve(path), f"few-shot training file ({kind}) was not used by the run: "
                                           f"the data changed since the run was made")


def record_paths(split: FewShotSplit, root: str | Path, types: Sequence[str]) -> dict[tuple[str, str], FileRef]:
    """{(type or "good", path): FileRef without hashes} of a split's training part."""
    out: dict[tuple[str, str], FileRef] = {}
    for t in types:
        for s in split.train_defects.get(t, []):
            out[(t, data_relative(s.image, root))] = FileRef(
                data_relative(s.image, root), "", None if s.mask is None else data_relative(s.mask, root))
    for s in split.train_good:
        out[("good", data_relative(s.image, root))] = FileRef(data_relative(s.image, root), "")
    return out


def verified_split(run: str | Path, info: RunInfo | None = None) -> FewShotSplit:
    """`run_split`, after `check_training` confirmed the run was made from exactly its training part."""
    info = info or RunInfo.read(run)
    split = run_split(run, info)
    check_training(run, info, split)
    return split


def completeness(info: RunInfo, n_pairs: int) -> str | None:
    """None for a finished run, else 'incomplete run (232 of 600 pairs)'."""
    if info.complete is None or info.complete:
        return None
    total = info.expected_pairs
    return f"incomplete run ({n_pairs} of {total} pairs)" if total else f"incomplete run ({n_pairs} pairs)"


def check_complete(run: str | Path, info: RunInfo, n_pairs: int, require_complete: bool = False) -> None:
    """Warn on stderr (``warning: RUN: incomplete run (232 of 600 pairs)``) about a run whose
    generation did not finish, or refuse it (DataError) with `require_complete`."""
    note = completeness(info, n_pairs)
    if note is None:
        return
    if require_complete:
        raise DataError(run, f"{note}; finish it by repeating its generate command")
    print(f"warning: {run}: {note}", file=sys.stderr)


__all__ = ["IDENTITY_KEYS", "RUN_JSON", "SCHEMA_KEY", "SCHEMA_VERSION", "FileRef", "RunInfo", "TrainingFiles",
           "check_complete", "check_training", "completeness", "data_relative", "record_training", "run_split",
           "sha256_file", "verified_split"]
