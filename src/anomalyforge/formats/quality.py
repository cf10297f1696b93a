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
from typing import Any, ClassVar

from anomalyforge.formats.schema import Document

QUALITY_JSON = "quality.json"
SCHEMA_VERSION = 2


@dataclass
class QualityScores(Document):
    """The typed quality.json of one run."""

    FILE: ClassVar[str] = QUALITY_JSON
    VERSION: ClassVar[int] = SCHEMA_VERSION

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
    def read(cls, path: str | Path) -> QualityScores:
        """A quality.json file (or the one in a run folder); DataError naming it on a mismatch."""
        return cls.read_file(cls.file_in(path), "quality scores")


__all__ = ["QUALITY_JSON", "SCHEMA_VERSION", "QualityScores"]
