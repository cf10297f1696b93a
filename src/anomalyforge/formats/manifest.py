"""The run manifest: one JSON record (`PairRecord`) per generated pair in `<run>/manifest.jsonl`.

Schema of a record (version 2; records without `schema_version` are version 1 and still read):

    schema_version  int        2
    id              str        pair id and file stem, e.g. 'broken_large_000012'
    defect_type     str        the (sub-)type it was generated for, e.g. 'contamination@1'
    base_type       str        the defect type (sub-type name before `SUBTYPE_SEP`)
    method, category  str
    image, mask     str        PNG paths relative to the run folder
    image_sha256, mask_sha256  str|null  sha256 of the PNG bytes (resume re-checks them)
    source          str        the good image it was made from, relative to the run's data root
    seed            int|null   the pair's seed
    params, scores  object     free-form (generator parameters; filter scores such as `ars`)
    rejected        bool       true when the ARS filter rejected the pair (kept, with its scores)

Records are appended (and fsynced) only after both PNGs exist, so a crash leaves at most a torn
last line (no newline), which readers ignore and `repair_manifest` truncates away. Any other line
that is not a valid record is a DataError naming the file and line. Later steps (filters) rewrite
the whole manifest atomically with `write_manifest`; rejected records are skipped by default.

A shard of a run (`generate --shard I/N`) records its pairs in `shards/I-of-N.jsonl` (same records,
same rules), so shards can write into one shared folder at once; `shard_manifest_name` names that
file, `shard_manifests` lists those present, and `synth.merge` assembles them into the manifest.
The functions below take that file name as `name` (default: the run's manifest).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anomalyforge.atomic import write_bytes_atomic
from anomalyforge.errors import DataError
from anomalyforge.formats.run import RUN_JSON, RunInfo, check_complete, sha256_file
from anomalyforge.formats.schema import dump, parse

MANIFEST = "manifest.jsonl"
SHARDS = "shards"
SCHEMA_VERSION = 2
SUBTYPE_SEP = "@"


def shard_manifest_name(index: int, count: int) -> str:
    """The manifest file (relative to the run folder) of shard `index` of `count`: 'shards/0-of-4.jsonl'."""
    return f"{SHARDS}/{int(index)}-of-{int(count)}.jsonl"


def shard_manifests(run: str | Path) -> list[str]:
    """The shard manifest files present in a run folder (names relative to it, sorted)."""
    folder = Path(run) / SHARDS
    if not folder.is_dir():
        return []
    return sorted(f"{SHARDS}/{p.name}" for p in folder.glob("*-of-*.jsonl") if p.is_file())


def base_type(name: str) -> str:
    """The defect type of a sub-type name (``contamination@1`` -> ``contamination``)."""
    return str(name).split(SUBTYPE_SEP, 1)[0]


def subtype_name(defect_type: str, k: int) -> str:
    """The name of sub-type `k` of a defect type (``contamination@1``)."""
    return f"{defect_type}{SUBTYPE_SEP}{k}"


@dataclass
class PairRecord:
    """One generated pair (see the module docstring)."""

    id: str
    defect_type: str
    image: str
    mask: str
    base_type: str = ""
    method: str = ""
    category: str = ""
    source: str = ""
    seed: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    scores: dict[str, Any] = field(default_factory=dict)
    rejected: bool = False
    image_sha256: str | None = None
    mask_sha256: str | None = None
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.base_type:
            self.base_type = base_type(self.defect_type)

    @classmethod
    def from_dict(cls, doc: Any, where: str | Path = MANIFEST) -> PairRecord:
        return parse(cls, doc, where, SCHEMA_VERSION)

    def to_dict(self) -> dict:
        return dump(self)

    def changed_files(self, run: str | Path) -> list[Path]:
        """The record's PNGs that are missing or whose bytes differ from the recorded hash."""
        bad = []
        for rel, h in ((self.image, self.image_sha256), (self.mask, self.mask_sha256)):
            p = Path(run) / rel
            if not p.is_file() or (h is not None and sha256_file(p) != h):
                bad.append(p)
        return bad


def _path(run: str | Path, name: str = MANIFEST) -> Path:
    return Path(run) / name


def _lines(raw: bytes) -> tuple[list[tuple[int, bytes]], int]:
    """(line number, bytes) of the complete lines and the byte length they span; the last piece
    without a newline is a torn record and is excluded."""
    lines, end, pos = [], 0, 0
    for i, chunk in enumerate(raw.split(b"\n")[:-1], 1):  # the last piece is b"" or a torn line
        pos += len(chunk) + 1
        if chunk.strip():
            lines.append((i, chunk))
        end = pos
    return lines, end


def _parse_line(p: Path, i: int, line: bytes) -> PairRecord:
    try:
        doc = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DataError(p, f"line {i}: not a JSON record") from None
    return PairRecord.from_dict(doc, f"{p}: line {i}")


def read_pairs(run: str | Path, include_rejected: bool = False, name: str = MANIFEST) -> list[PairRecord]:
    """All records of a run in file order; rejected ones only on request. DataError naming the file
    and line on a record that does not match the schema (a torn last line is ignored)."""
    p = _path(run, name)
    if not p.is_file():
        if not Path(run).is_dir():
            raise DataError(run, "run folder not found")
        if not (Path(run) / RUN_JSON).is_file():
            raise DataError(run, "not a generation run (no run.json)")
        return []
    lines, _ = _lines(p.read_bytes())
    recs = [_parse_line(p, i, line) for i, line in lines]
    return recs if include_rejected else [r for r in recs if not r.rejected]


def read_manifest(run: str | Path, include_rejected: bool = False) -> list[dict]:
    """`read_pairs` as plain dicts (validated), for code that edits records as free-form JSON."""
    return [r.to_dict() for r in read_pairs(run, include_rejected)]


def _as_record(r: PairRecord | dict) -> PairRecord:
    return r if isinstance(r, PairRecord) else PairRecord.from_dict(r)


def _encode(records: Iterable[PairRecord | dict]) -> bytes:
    return b"".join((json.dumps(_as_record(r).to_dict(), sort_keys=True) + "\n").encode() for r in records)


def repair_manifest(run: str | Path, name: str = MANIFEST) -> None:
    """Drop a torn last line left by an interrupted run (truncate to the last complete record)."""
    p = _path(run, name)
    if not p.is_file():
        return
    raw = p.read_bytes()
    _, end = _lines(raw)
    if end != len(raw):
        with open(p, "r+b") as fh:
            fh.truncate(end)
            fh.flush()
            os.fsync(fh.fileno())


def append_records(run: str | Path, records: Iterable[PairRecord | dict], name: str = MANIFEST) -> None:
    """Append records with one fsync (called after all of their PNGs exist)."""
    data = _encode(records)
    if not data:
        return
    p = _path(run, name)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "ab") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def write_manifest(run: str | Path, records: Iterable[PairRecord | dict], name: str = MANIFEST) -> Path:
    """Replace the manifest atomically with `records` (e.g. after a filter added scores)."""
    return write_bytes_atomic(_path(run, name), _encode(records))


@dataclass
class OpenRun:
    """A run folder as the later stages read it: its config and its records."""

    path: Path
    info: RunInfo
    records: list[PairRecord]  # every record, rejected ones included

    @property
    def kept(self) -> list[PairRecord]:
        return [r for r in self.records if not r.rejected]

    def source(self, r: PairRecord) -> Path | None:
        """The good image a pair was made from (None when it records none)."""
        return self.info.resolve(r.source) if r.source else None


def open_run(run: str | Path, require_complete: bool = False) -> OpenRun:
    """run.json and manifest of a run folder; warns on stderr about a run whose generation did not
    finish (``warning: RUN: incomplete run (232 of 600 pairs)``), or refuses it with `require_complete`."""
    run = Path(run)
    info = RunInfo.read(run)
    records = read_pairs(run, include_rejected=True)
    check_complete(run, info, len(records), require_complete)
    return OpenRun(run, info, records)


def check_files(run: str | Path, records: Iterable[PairRecord]) -> None:
    """DataError naming the first PNG listed in the manifest that is missing."""
    for r in records:
        for key in ("image", "mask"):
            p = Path(run) / getattr(r, key)
            if not p.is_file():
                raise DataError(p, f"record {r.id!r}: {key} file missing (listed in the manifest)")
