"""`quality.json`: generation quality of one run (Inception Score, IC-LPIPS per defect type).

Schema (version 2; a file without `schema_version` is version 1 and still reads):

    schema_version  int      2
    run             str      absolute path of the scored run folder (informational)
    method          str|null the run's generator
    config          object   the QualityConfig identity (free-form)
    created, version  str
    types           {type: object}  per defect type: n, is, is_std, ic_lpips, clusters, references
    all             object   the same over the whole run
    references      object   n, is, is_std of the real few-shot defects

`anomalyforge quality RUN` writes RUN/quality.json; a benchmark writes it under its own folder
(methods/<name>/quality.json), never into a run it was given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anomalyforge.atomic import write_json_atomic
from anomalyforge.formats.schema import dump, parse, read_json

QUALITY_JSON = "quality.json"
SCHEMA_VERSION = 2


@dataclass
class QualityScores:
    """The typed quality.json of one run."""

    types: dict[str, dict[str, Any]]
    all: dict[str, Any]
    references: dict[str, Any] = field(default_factory=dict)
    run: str = ""
    method: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    version: str = ""
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, doc: Any, where: str | Path = QUALITY_JSON) -> QualityScores:
        return parse(cls, doc, where, SCHEMA_VERSION)

    @classmethod
    def read(cls, path: str | Path) -> QualityScores:
        """A quality.json file (or the one in a run folder); DataError naming it on a mismatch."""
        path = Path(path)
        if path.is_dir():
            path = path / QUALITY_JSON
        return cls.from_dict(read_json(path, "quality scores"), path)

    def to_dict(self) -> dict:
        return dump(self)

    def write(self, path: str | Path) -> Path:
        """Write atomically to `path` (a file, or quality.json inside an existing folder)."""
        path = Path(path)
        if path.is_dir():
            path = path / QUALITY_JSON
        self.schema_version = SCHEMA_VERSION
        return write_json_atomic(path, self.to_dict())


__all__ = ["QUALITY_JSON", "SCHEMA_VERSION", "QualityScores"]
