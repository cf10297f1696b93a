"""The run manifest: one JSON record per generated pair in `<run>/manifest.jsonl`.

Records are appended (and fsynced) only after both PNGs exist, so a crash leaves at most a torn
last line, which `read_manifest` ignores and `repair_manifest` truncates away. Later steps
(filters, benchmarks) rewrite the whole manifest atomically with `write_manifest`; a record with
`"rejected": true` is skipped by default.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from anomalyforge.data import few_shot_split, load_dataset
from anomalyforge.errors import DataError

MANIFEST = "manifest.jsonl"
RUN_JSON = "run.json"


def _path(run: str | Path) -> Path:
    return Path(run) / MANIFEST


def _complete_lines(raw: bytes) -> tuple[list[bytes], int]:
    """Complete, parseable lines and the byte length they span (a torn tail is excluded)."""
    lines, end, pos = [], 0, 0
    for chunk in raw.split(b"\n")[:-1]:  # the last piece is either b"" or a torn line
        pos += len(chunk) + 1
        if chunk.strip():
            try:
                json.loads(chunk)
            except json.JSONDecodeError:
                break
            lines.append(chunk)
        end = pos
    return lines, end


def read_manifest(run: str | Path, include_rejected: bool = False) -> list[dict]:
    """All records of a run in file order; records marked `"rejected": true` only on request."""
    p = _path(run)
    if not p.is_file():
        if not Path(run).is_dir():
            raise DataError(run, "run folder not found")
        if not (Path(run) / RUN_JSON).is_file():
            raise DataError(run, "not a generation run (no run.json)")
        return []
    lines, _ = _complete_lines(p.read_bytes())
    recs = [json.loads(line) for line in lines]
    return recs if include_rejected else [r for r in recs if not r.get("rejected", False)]


def repair_manifest(run: str | Path) -> None:
    """Drop a torn last line left by an interrupted run (truncate to the last complete record)."""
    p = _path(run)
    if not p.is_file():
        return
    raw = p.read_bytes()
    _, end = _complete_lines(raw)
    if end != len(raw):
        with open(p, "r+b") as fh:
            fh.truncate(end)
            fh.flush()
            os.fsync(fh.fileno())


def append_records(run: str | Path, records: Iterable[dict]) -> None:
    """Append records with one fsync (called after all of their PNGs exist)."""
    data = b"".join((json.dumps(r, sort_keys=True) + "\n").encode() for r in records)
    if not data:
        return
    with open(_path(run), "ab") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def write_manifest(run: str | Path, records: Iterable[dict]) -> Path:
    """Replace the manifest atomically with `records` (e.g. after a filter added scores)."""
    p = _path(run)
    tmp = p.with_name(f".{p.name}.tmp")
    with open(tmp, "wb") as fh:
        for r in records:
            fh.write((json.dumps(r, sort_keys=True) + "\n").encode())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, p)
    return p


def read_run_config(run: str | Path) -> dict:
    """The run's `run.json` (method, config, data, category, types, n, seed, size, ...)."""
    p = Path(run) / RUN_JSON
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise DataError(run, "not a generation run (no run.json)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(p, f"cannot read run config ({exc})") from None


def run_split(run: str | Path):
    """The few-shot split of the category a run was generated from (run.json's data path,
    category, format and ratio), recomputed from the dataset: the run's training defects and
    good images, never its test part."""

    doc = read_run_config(run)
    data = doc.get("data")
    if not isinstance(data, str) or not data:
        raise DataError(Path(run) / RUN_JSON, "run.json names no data path")
    ds = load_dataset(Path(data), category=doc.get("category"), data_format=doc.get("format"))
    return few_shot_split(ds, ratio=float(doc.get("ratio") or 1 / 3), progress=False)
