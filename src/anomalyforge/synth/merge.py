"""Putting a sharded run together: shard manifests into one manifest, shard folders into one run.

    merge_runs([Path("runs/cp-0"), Path("runs/cp-1")], Path("runs/cp"))

`assemble_shards(run)` is the last step of a sharded run: once the records of the manifest and of
every `shards/*.jsonl` file cover all the pairs run.json expects, they are written as the run's
`manifest.jsonl` in pair order (defect types in run order, then index: the order a single-process
run writes), the ARS filter runs when the run asks for it, and run.json is marked complete. It is
idempotent, so shards finishing at the same time in a shared folder may each call it.

`merge_runs` does the same for shards written into separate folders: it refuses runs whose config
or training split differ, copies (hash-checked) PNGs and the fitted state into the output, then
assembles. Everything is checked before anything is written.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from anomalyforge.atomic import check_output_dir, copy_atomic
from anomalyforge.errors import ConfigError, DataError
from anomalyforge.formats.manifest import PairRecord, read_pairs, shard_manifests, write_manifest
from anomalyforge.formats.run import IDENTITY_KEYS, RUN_JSON, RunInfo, sha256_file
from anomalyforge.formats.schema import differing
from anomalyforge.quality.filter import filter_run

# run.json keys that must agree for runs to be parts of one run
MERGE_KEYS = (*IDENTITY_KEYS, "n", "keep_ratio", "ratio", "format", "expected_pairs")
COPIED_FOLDERS = ("state", "clusters")  # what generation learned, copied from the first part that has it


def pair_index(record: PairRecord) -> int:
    """The index in a pair id ('broken_large_000012' -> 12)."""
    return int(record.id.rsplit("_", 1)[1])


def run_records(run: str | Path) -> list[PairRecord]:
    """Every record of a run folder: its manifest's, then those of its shard files not already in
    it (each pair once, by id), in pair order."""
    info = RunInfo.read(run)
    seen: dict[str, PairRecord] = {}
    for name in ("manifest.jsonl", *shard_manifests(run)):
        if (Path(run) / name).is_file():
            for r in read_pairs(run, include_rejected=True, name=name):
                seen.setdefault(r.id, r)
    order = {t: k for k, t in enumerate(info.types)}
    return sorted(seen.values(), key=lambda r: (order.get(r.defect_type, len(order)), r.defect_type, pair_index(r)))


def assemble_shards(run: str | Path, filter_config=None, progress: bool = False) -> bool:
    """Write the run's manifest from all its records once they are complete (see module doc);
    True when the run is complete, False while pairs are missing."""
    run = Path(run)
    info = RunInfo.read(run)
    records = run_records(run)
    expected = info.expected_pairs
    if expected is None or len(records) < expected:
        return False
    if info.complete and len(read_pairs(run, include_rejected=True)) == len(records):
        return True  # another shard (or an earlier call) assembled it
    write_manifest(run, records)
    if info.keep_ratio:
        filter_run(run, keep_ratio=info.keep_ratio, seed=int(info.seed), config=filter_config, progress=progress)
    info.complete = True
    info.write(run)
    return True


def _check_parts(runs: list[Path]) -> list[RunInfo]:
    if not runs:
        raise ConfigError("merge: give at least one run folder")
    infos = [RunInfo.read(r) for r in runs]
    first = infos[0].to_dict()
    for r, info in zip(runs[1:], infos[1:], strict=True):
        diff = differing(first, info.to_dict(), MERGE_KEYS)
        if diff:
            raise ConfigError(f"{r}: not a part of the same run as {runs[0]} ({', '.join(diff)} differ); "
                              f"only shards of one generate command can be merged")
    return infos


def _copy_folder(src: Path, dest: Path) -> None:
    """Copy a folder to `dest` through a temporary sibling and one rename (nothing half-copied)."""
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.tmp")
    try:
        shutil.copytree(src, tmp, symlinks=False)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def merge_runs(runs: list[Path], out: Path, filter_config=None, progress: bool = False) -> dict:
    """Merge runs written by shards of one generate command (separate folders) into `out`.

    ConfigError when the runs (or a run already in `out`) differ in config or training split; a
    DataError names a PNG that is missing or does not match its recorded hash, or a pair recorded
    differently by two parts. `out` may be one of `runs` (merging into it). Returns a summary:
    pairs per type, total, expected and whether the merged run is complete."""
    runs, out = [Path(r) for r in runs], Path(out)
    check_output_dir(out)
    parts = list(dict.fromkeys(runs))
    if (out / RUN_JSON).is_file() and out not in parts:
        parts.append(out)
    infos = _check_parts(parts)
    if out.exists() and not (out / RUN_JSON).is_file() and any(out.iterdir()):
        raise ConfigError(f"{out}: folder is not empty and holds no run; pick another --out")
    chosen: dict[str, tuple[Path, PairRecord]] = {}
    for run in parts:  # check everything before writing anything
        for r in run_records(run):
            if r.id in chosen:
                other, prev = chosen[r.id]
                if (prev.image_sha256, prev.mask_sha256) != (r.image_sha256, r.mask_sha256):
                    raise DataError(run / r.image, f"pair {r.id!r} differs from the one in {other}")
                continue
            bad = r.changed_files(run)
            if bad:
                raise DataError(bad[0], f"pair {r.id!r}: file missing or changed since it was written")
            chosen[r.id] = (run, r)
    out.mkdir(parents=True, exist_ok=True)
    for run, r in chosen.values():
        if run == out:
            continue
        for rel, h in ((r.image, r.image_sha256), (r.mask, r.mask_sha256)):
            dest = out / rel
            if not (dest.is_file() and h is not None and sha256_file(dest) == h):
                copy_atomic(run / rel, dest)
    for name in COPIED_FOLDERS:
        src = next((run / name for run in parts if (run / name).is_dir()), None)
        if src is not None and not (out / name).exists():
            _copy_folder(src, out / name)
    info = infos[0]
    info.complete = False
    info.write(out)
    records = sorted((r for _, r in chosen.values()),
                     key=lambda r: (info.types.index(r.defect_type) if r.defect_type in info.types else len(info.types),
                                    r.defect_type, pair_index(r)))
    write_manifest(out, records)
    complete = assemble_shards(out, filter_config=filter_config, progress=progress)
    per_type: dict[str, int] = {}
    for r in records:
        per_type[r.defect_type] = per_type.get(r.defect_type, 0) + 1
    return {"run": str(out), "parts": len(parts), "pairs": per_type, "total": len(records),
            "expected": info.expected_pairs, "complete": complete}
