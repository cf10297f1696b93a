"""Generation runs: a folder of defect image–mask pairs with its config, manifest and fitted state.

    summary = generate_run(Path("datasets/mvtec_ad/bottle"), Path("runs/bottle_cp"), n=100)

Layout: `run.json` (written first: the full config and the training files; marked complete at
the end, `anomalyforge.formats.run`), `state/` (what the generator learned from
the few-shot training split), `images/<type>/<id>.png`, `masks/<type>/<id>.png` (0/255) and
`manifest.jsonl` (one record per pair). Every pair's seed derives from (run seed, defect type,
index) through numpy's SeedSequence, so an interrupted run resumes to byte-identical files and
asking for a larger `n` with the same config extends the run.

`shard=Shard(I, N)` draws only shard I's pairs (`anomalyforge.synth.shards`) and records them in
`shards/I-of-N.jsonl`, so shards may write into one shared folder at once; the shard that
completes the set writes the manifest (`anomalyforge.synth.merge.assemble_shards`).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from anomalyforge import __version__
from anomalyforge.atomic import TEMP_NAME, check_output_dir, write_png_atomic
from anomalyforge.data import few_shot_split, fit_data, load_dataset
from anomalyforge.errors import ConfigError, DataError
from anomalyforge.formats.manifest import (
    MANIFEST,
    PairRecord,
    append_records,
    base_type,
    read_pairs,
    repair_manifest,
    shard_manifests,
    write_manifest,
)
from anomalyforge.formats.run import IDENTITY_KEYS, RUN_JSON, RunInfo, data_relative, record_training, sha256_file
from anomalyforge.formats.schema import refuse_other_job
from anomalyforge.quality.cluster import plan_subtypes, save_subtypes
from anomalyforge.quality.filter import filter_run
from anomalyforge.seeds import pair_seed
from anomalyforge.synth.base import Generator, get_generator
from anomalyforge.synth.merge import assemble_shards
from anomalyforge.synth.shards import Shard, parse_shard, shard_pairs

ID_DIGITS = 6
STATE = "state"
PARTS = "state-parts"  # pieces of a generator's state while they are fitted (Generator.fit_parts)
_DONE = "FIT_DONE"


def pair_id(defect_type: str, index: int) -> str:
    """Manifest id and file stem of pair `index` of a defect type, e.g. 'broken_large_000012'."""
    return f"{defect_type}_{index:0{ID_DIGITS}d}"




def _jsonable(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _normalise(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=_jsonable, sort_keys=True))


# ---- the steps of a run, in order -------------------------------------------------------------
def _check_options(n: Any, seed: Any, size: Any) -> None:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n <= 0:
        raise ConfigError(f"n must be a positive number of pairs per defect type, got {n}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed}")
    if not isinstance(size, (int, np.integer)) or size < 16:
        raise ConfigError(f"size must be an integer of at least 16, got {size}")


def _filter_plan(cls, keep_ratio: float | None, n: int) -> tuple[float | None, int]:
    """The ARS keep ratio (None: no filtering) and how many pairs per type to generate for it."""
    if keep_ratio is None:
        keep_ratio = cls.keep_ratio
    if keep_ratio is not None and (not isinstance(keep_ratio, (int, float)) or isinstance(keep_ratio, bool)
                                   or not 0 <= keep_ratio <= 1):
        raise ConfigError(f"keep_ratio must be in [0, 1] (0: no filtering), got {keep_ratio!r}")
    keep_ratio = float(keep_ratio) if keep_ratio else None
    return keep_ratio, int(np.ceil(n / keep_ratio - 1e-9)) if keep_ratio else int(n)


def _select_types(ds, split, types: list[str] | None, data: Path) -> list[str]:
    known = ds.defect_types
    if types is not None and not types:
        raise ConfigError("no defect type given (types is empty); leave it out to use every type")
    if not known:
        raise DataError(data, f"category {ds.category!r} has no defect images; nothing to learn defects from")
    if types:
        unknown = [t for t in types if t not in known]
        if unknown:
            raise ConfigError(f"unknown defect type(s) {', '.join(unknown)} for {ds.category!r}; "
                              f"known: {', '.join(known)}")
        missing = [t for t in types if t not in split.train_defects]
        if missing:
            raise DataError(data, f"defect type {missing[0]!r} has no defect image with a non-empty mask")
        return sorted(dict.fromkeys(types))
    usable = sorted(split.train_defects)
    if not usable:
        raise DataError(data, f"category {ds.category!r} has no defect image with a non-empty mask "
                              f"(all masks missing or empty)")
    return usable


def _load_training(data: Path, category: str | None, data_format: str | None, types: list[str] | None,
                   size: int, progress: bool):
    """The dataset, its few-shot split, the defect types to generate and the FitData of those."""
    ds = load_dataset(data, category=category, data_format=data_format)
    split = few_shot_split(ds, progress=progress)
    types = _select_types(ds, split, types, data)
    fd = fit_data(split, size=int(size), extra={"progress": bool(progress)})
    fd.defects = {t: fd.defects[t] for t in types}
    return ds, split, types, fd


def _check_existing(out: Path, info: RunInfo) -> RunInfo | None:
    """The run already in `out` when it is the same run (resume / extend), None for a new folder;
    ConfigError when `out` holds something else."""
    if not out.exists():
        return None
    if not out.is_dir():
        raise ConfigError(f"{out}: output exists and is not a folder")
    names = {p.name for p in out.iterdir()}  # one listing: a shard starting too may add run.json meanwhile
    if RUN_JSON not in names:
        if any(not name.startswith(".") for name in names):  # a hidden temp file: a shard starting too
            raise ConfigError(f"{out}: folder is not empty and holds no run; pick another --out")
        return None
    old = RunInfo.read(out)
    refuse_other_job(out, old.identity(), info.identity(), IDENTITY_KEYS)
    return old


def _publish(final: Path, marker: str, fill: Callable[[Path], None]) -> None:
    """`fill` a folder of this process's own, mark it done (`marker`) and rename it to `final`, so
    the folder appears complete at once; a process that loses the race to another one writing
    the same folder keeps the winner's (the same bytes)."""
    tmp = final.parent / f".{final.name}.{uuid.uuid4().hex}.partial"
    try:
        tmp.mkdir(parents=True)
        fill(tmp)
        (tmp / _DONE).write_text(marker + "\n")
        try:
            os.replace(tmp, final)
        except OSError:
            if not (final / _DONE).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _fit_piece(gen: Generator, fd, out: Path, part: str, index: int) -> Path:
    """Fit one piece of the generator (`Generator.fit_parts`) into `state-parts/<index>/`, or find it
    there; like the state, it appears complete by one rename."""
    final = out / PARTS / str(index)
    done = final / _DONE
    if done.is_file() and done.read_text().strip() == part:
        return final
    shutil.rmtree(final, ignore_errors=True)
    _publish(final, part, lambda tmp: gen.fit_part(fd, part, tmp))
    return final


def _fit_or_load(gen: Generator, fd, out: Path, part: str | None = None) -> None:
    """Fit into a folder of this process's own and rename it to `state/` (a shard fitting at the
    same time in a shared folder loses the race and loads the winner's state: the same bytes).
    A generator made of pieces fits them one by one into `state-parts/` (a run interrupted while
    fitting resumes at the piece it was on) and joins them; `part` fits that piece only."""
    state = out / STATE
    pieces = gen.fit_parts(fd)
    if part is not None and part not in pieces:
        raise ConfigError(f"method {gen.name!r} has no fit part {part!r}; its parts: {', '.join(pieces) or 'none'}")
    if (state / _DONE).is_file():
        if part is None:
            gen.load(fd, state)
        return
    if part is not None:
        _fit_piece(gen, fd, out, part, pieces.index(part))
        return
    if state.exists() and not (state / _DONE).is_file():  # an older version's unfinished state (new
        shutil.rmtree(state, ignore_errors=True)         # ones appear complete, by one rename)
    if pieces:
        dirs = {p: _fit_piece(gen, fd, out, p, i) for i, p in enumerate(pieces)}
        _publish(state, "fitted", lambda tmp: gen.join_parts(fd, dirs, tmp))
        shutil.rmtree(out / PARTS, ignore_errors=True)  # joined into the state
    else:
        _publish(state, "fitted", lambda tmp: gen.fit(fd, tmp))
    gen.load(fd, state)  # generate from the saved state, exactly as a resumed run does


def _fit(gen: Generator, fd, out: Path, fresh: bool, created: bool, part: str | None = None) -> None:
    """Fit (or load the saved state); a fresh run that fails while fitting leaves nothing behind."""
    try:
        _fit_or_load(gen, fd, out, part)
    except BaseException:
        if fresh:
            shutil.rmtree(out / PARTS, ignore_errors=True)
            (out / RUN_JSON).unlink(missing_ok=True)
            if created and out.is_dir() and not any(out.iterdir()):
                out.rmdir()
        raise


def _pairs_on_disk(out: Path, name: str = MANIFEST, wanted: set[str] | None = None) -> set[str]:
    """Ids of the pairs already written (resume): the torn tail of the manifest `name` is dropped,
    and records whose PNGs are missing or differ from their recorded hash are removed, to be drawn
    again. A shard (`wanted`: its pair ids) also counts its pairs that the run's other record
    files (the manifest, shards of another N) already hold intact."""
    repair_manifest(out, name)
    records = read_pairs(out, include_rejected=True, name=name)
    bad = {r.id: files for r in records if (files := r.changed_files(out))}
    if bad:
        first = next(iter(bad.values()))[0]
        where = "the manifest" if name == MANIFEST else name
        print(f"warning: {out}: {len(bad)} pair(s) listed in {where} are missing or changed on disk "
              f"(first {first}); drawing them again", file=sys.stderr)
        write_manifest(out, [r for r in records if r.id not in bad], name=name)
    done = {r.id for r in records if r.id not in bad}
    if wanted is not None:
        for other in (MANIFEST, *shard_manifests(out)):
            if other != name and (out / other).is_file():
                done.update(r.id for r in read_pairs(out, include_rejected=True, name=other)
                            if r.id in wanted and r.id not in done and not r.changed_files(out))
    return done


def _drop_stray_temps(out: Path, todo: list[tuple[str, int]]) -> None:
    """Remove the temp PNGs an interrupted writer left for the pairs about to be drawn (only this
    run, or this shard, writes those pairs, so no other writer's temp file is touched)."""
    ids: dict[str, set[str]] = {}
    for t, i in todo:
        ids.setdefault(t, set()).add(pair_id(t, i))
    for t, wanted in ids.items():
        for kind in ("images", "masks"):
            folder = out / kind / t
            if not folder.is_dir():
                continue
            for p in folder.iterdir():
                m = TEMP_NAME.fullmatch(p.name) if p.name.startswith(".") else None
                if m and m.group(1).removesuffix(".png") in wanted:
                    p.unlink(missing_ok=True)


def _write_pairs(gen: Generator, out: Path, todo: list[tuple[str, int]], seed: int, method: str, category: str,
                 size: int, root: str, bar, name: str = MANIFEST,
                 on_records: Callable[[int], None] | None = None) -> _Writer:
    """Draw the pairs of `todo` in batches of one type and write them (PNG writes overlap drawing).
    A batch never crosses a block of `batch_size` indices (pairs i // batch_size alike), so a
    resumed run or a shard draws each pair in the batch a fresh single-process run draws it in."""
    bs = max(1, int(getattr(gen, "batch_size", 1)))
    writer = _Writer(out, bar, name, on_records)
    try:
        k = 0
        while k < len(todo):
            t, block = todo[k][0], todo[k][1] // bs
            j = k
            while j < len(todo) and j - k < bs and todo[j][0] == t and todo[j][1] // bs == block:
                j += 1
            batch = todo[k:j]
            seeds = [pair_seed(seed, t, i) for _, i in batch]
            pairs = gen.generate(t, seeds)
            if len(pairs) != len(seeds):
                raise ConfigError(f"method {method!r} returned {len(pairs)} pairs for {len(seeds)} seeds")
            writer.submit([_prepare(pair, t, i, s, method, category, size, root)
                           for (_, i), s, pair in zip(batch, seeds, pairs, strict=False)])
            k += len(batch)
        writer.close()
    finally:
        writer.abort()
    return writer


def _summary(out: Path, method: str, category: str, new: int, secs: float, writer: _Writer,
             name: str = MANIFEST) -> dict:
    per_type: dict[str, int] = {}
    kept: dict[str, int] = {}
    for r in read_pairs(out, include_rejected=True, name=name):
        per_type[r.defect_type] = per_type.get(r.defect_type, 0) + 1
        kept[r.defect_type] = kept.get(r.defect_type, 0) + (not r.rejected)
    return {"run": str(out), "method": method, "category": category, "pairs": per_type, "kept": kept,
            "new": new, "seconds": round(secs, 3), "pairs_per_s": round(new / secs, 2) if secs else 0.0,
            "redraws": writer.redraws, "rejected_drafts": writer.rejects}


@dataclass
class _Prepared:
    """A run folder set up and fitted: what generating its pairs needs."""

    gen: Generator
    info: RunInfo
    types: list[str]
    counts: dict[str, int]
    category: str
    root: str
    keep_ratio: float | None
    parts: list[str]


def _prepare_run(data: Path, out: Path, method: str, n: int, category: str | None, types: list[str] | None,
                 seed: int, size: int, params: dict | None, data_format: str | None, progress: bool,
                 subtypes: str | None, keep_ratio: float | None, fit: bool = True,
                 part: str | None = None) -> _Prepared:
    """Check the options, write run.json, fit the generator (or load its saved state); `fit=False`
    stops after run.json, `part` fits only that piece of the generator (`Generator.fit_parts`)."""
    data, out = Path(data), Path(out)
    _check_options(n, seed, size)
    check_output_dir(out, [data])  # never inside the dataset, never below a file
    cls = get_generator(method)
    gen = cls(cls.make_config(params))
    keep_ratio, n_gen = _filter_plan(cls, keep_ratio, n)
    ds, split, types, fd = _load_training(data, category, data_format, types, size, progress)
    fd.verify()  # every training file decodes and matches its mask, before anything is written
    root = os.path.abspath(data)
    training = record_training(split.train_good, {t: split.train_defects[t] for t in types}, root)
    clusters = None
    if subtypes:  # GAA anomaly concepts: fit and generate per sub-type <type>@<k>

        fd, clusters = plan_subtypes(fd, subtypes, out, seed=int(seed), progress=progress)
        types = fd.defect_types
    info = RunInfo(method=method, config=_normalise(gen.config_dict()), data=root, format=ds.format,
                   category=ds.category, types=types, n=n_gen, seed=int(seed), keep_ratio=keep_ratio,
                   size=int(size), ratio=split.ratio, version=__version__, training=training, complete=False)
    old = _check_existing(out, info)
    created = not out.exists()
    if old is not None:
        info.n = max(old.n, n_gen)
    counts = pairs_per_type(types, info.n, fd)
    info.expected_pairs = sum(counts.values())
    out.mkdir(parents=True, exist_ok=True)
    info.write(out)
    parts = gen.fit_parts(fd)
    if not fit:
        return _Prepared(gen, info, types, counts, ds.category, root, keep_ratio, parts)
    _fit(gen, fd, out, fresh=old is None, created=created, part=part)
    if clusters is not None and part is None:  # after a successful fit, so a failed fresh run leaves nothing behind

        save_subtypes(out, fd, clusters, int(seed))
    return _Prepared(gen, info, types, counts, ds.category, root, keep_ratio, parts)


def fit_run(data: Path, out: Path, method: str = "croppaste", n: int = 100, category: str | None = None,
            types: list[str] | None = None, seed: int = 0, size: int = 256, params: dict | None = None,
            data_format: str | None = None, progress: bool = True, subtypes: str | None = None,
            keep_ratio: float | None = None, fit: bool = True, part: str | None = None) -> dict:
    """The first half of `generate_run` (same arguments): write run.json and fit the generator's
    state into `out/state/` (or find it there), drawing no pair. A distributed run plans with
    `fit=False`, fits each piece of a generator made of pieces (`part`: one per defect type for
    DualAnoDiff) as a task of its own, then once more without `part` to join them; its shards load
    the state. Returns {"run", "types", "expected_pairs", "parts"}."""
    prep = _prepare_run(data, out, method, n, category, types, seed, size, params, data_format, progress,
                        subtypes, keep_ratio, fit=fit, part=part)
    return {"run": str(out), "types": prep.types, "expected_pairs": prep.info.expected_pairs, "parts": prep.parts}


def generate_run(data: Path, out: Path, method: str = "croppaste", n: int = 100, category: str | None = None,
                 types: list[str] | None = None, seed: int = 0, size: int = 256, params: dict | None = None,
                 data_format: str | None = None, progress: bool = True, subtypes: str | None = None,
                 keep_ratio: float | None = None, filter_config=None, shard: Shard | str | None = None,
                 assemble: bool = True, on_records: Callable[[int], None] | None = None) -> dict:
    """Fit `method` on the few-shot training split of `data` and write `n` pairs per defect type to `out`.

    `keep_ratio` (None: the method's default, e.g. 0.5 for gaa; 0: no filtering) generates
    n / keep_ratio pairs per type and then keeps the best n by ARS (`quality.filter.filter_run`,
    with `filter_config` as its ARSConfig); the others stay in the manifest, marked rejected.

    `subtypes` ("auto" or a clusters.json path) splits each defect type into anomaly concepts
    ``<type>@<k>`` first (GAA clustering, `anomalyforge.quality.cluster.plan_subtypes`); the
    clusters are saved in `out/clusters/`.

    `shard` ('I/N' or a `Shard`) draws only that shard's pairs (same ids and seeds) and records
    them in `out/shards/I-of-N.jsonl`; with `assemble` (default) the shard that finds every pair
    of the run written writes the manifest in pair order and marks the run complete (then the ARS
    filter runs); without, `anomalyforge.synth.merge.assemble_shards` is left to the caller.
    `on_records(k)` is called each time k records were appended (progress of a remote shard).

    run.json records the exact training files (path and sha256) and is marked complete when
    generation (and filtering) ends. Resumes an interrupted run (re-checking the hash of every
    PNG already written) and extends one with the same config; a folder holding a different run
    is a ConfigError. Returns a summary: pairs per type (in the folder; a shard's: in its file),
    new pairs written now, seconds, pairs/s, redraws (drafts rejected and redrawn) and
    rejected_drafts (count per reason).
    """

    t0 = time.perf_counter()
    out = Path(out)
    part = parse_shard(shard) if shard is not None else None
    prep = _prepare_run(data, out, method, n, category, types, seed, size, params, data_format, progress,
                        subtypes, keep_ratio)
    name = part.manifest if part is not None else MANIFEST
    block = max(1, int(getattr(prep.gen, "batch_size", 1)))
    wanted = shard_pairs(prep.types, prep.counts, block, part)
    done = _pairs_on_disk(out, name, {pair_id(t, i) for t, i in wanted} if part is not None else None)
    todo = [(t, i) for t, i in wanted if pair_id(t, i) not in done]
    _drop_stray_temps(out, todo)
    desc = f"{prep.category}/{method}" + (f" shard {part}" if part is not None else "")
    bar = tqdm(total=len(todo), desc=desc, unit="pair", file=sys.stderr, disable=not progress)
    try:
        writer = _write_pairs(prep.gen, out, todo, int(seed), method, prep.category, int(size), prep.root, bar,
                              name, on_records)
    finally:
        bar.close()
    if part is not None:
        if assemble:
            assemble_shards(out, filter_config=filter_config, progress=progress)
    else:
        if prep.keep_ratio:

            filter_run(out, keep_ratio=prep.keep_ratio, seed=int(seed), config=filter_config, progress=progress)
        prep.info.complete = True
        prep.info.write(out)
    return _summary(out, method, prep.category, len(todo), time.perf_counter() - t0, writer, name)


def pairs_per_type(types: list[str], n: int, fd) -> dict[str, int]:
    """How many pairs each (sub-)type gets: `n` per defect type. Sub-types ``<type>@<k>`` of one
    defect type share its `n` in proportion to their number of few-shot examples (largest
    remainder, at least one each), so runs with and without sub-types have the same size."""
    groups: dict[str, list[str]] = {}
    for t in types:
        groups.setdefault(base_type(t), []).append(t)
    out: dict[str, int] = {}
    for members in groups.values():
        if len(members) == 1:
            out[members[0]] = n
            continue
        sizes = np.array([max(1, len(fd.defects.get(t, []))) for t in members], dtype=float)
        share = sizes / sizes.sum() * max(n, len(members))
        alloc = np.maximum(1, np.floor(share)).astype(int)
        for j in np.argsort(-(share - np.floor(share)), kind="stable"):
            if alloc.sum() >= max(n, len(members)):
                break
            alloc[j] += 1
        out.update({t: int(a) for t, a in zip(members, alloc, strict=False)})
    return out


def _prepare(pair, t: str, i: int, s: int, method: str, category: str, size: int, root: str) -> tuple:
    """Check a generated pair and build its manifest record: (record, image, mask). The record's
    PNG hashes are filled in once the PNGs are written."""
    img, mask = np.asarray(pair.image), np.asarray(pair.mask)
    if img.shape != (size, size, 3) or img.dtype != np.uint8 or mask.shape != (size, size):
        raise ConfigError(f"method {method!r} returned image {img.shape} {img.dtype} / mask {mask.shape}; "
                          f"expected ({size}, {size}, 3) uint8 and ({size}, {size})")
    mask = np.where(mask > 0, 255, 0).astype(np.uint8)
    pid = pair_id(t, i)
    rec = PairRecord(id=pid, defect_type=t, base_type=base_type(t), method=method, category=category,
                     image=f"images/{t}/{pid}.png", mask=f"masks/{t}/{pid}.png",
                     source=data_relative(pair.source, root) if pair.source else "", seed=int(s),
                     params=_normalise(pair.params), scores={})
    return rec, img, mask


def _write_png(path: Path, arr: np.ndarray) -> str:
    """Write a PNG atomically and return the sha256 of its bytes."""
    write_png_atomic(path, arr)
    return sha256_file(path)


class _Writer:
    """Writes PNGs on worker threads (encoding and fsync release the GIL) while the next batch is
    drawn; appends a batch's manifest records, in order and with one fsync, once all of the
    batch's PNGs exist. On error or interrupt, records whose PNGs were written are still kept."""

    def __init__(self, out: Path, bar, name: str = MANIFEST, on_records: Callable[[int], None] | None = None) -> None:
        self.out, self.bar, self.name, self.on_records = out, bar, name, on_records
        self.pool = ThreadPoolExecutor(max_workers=2)
        self.pending: list[tuple[PairRecord, list]] = []
        self.redraws = 0
        self.rejects: dict[str, int] = {}

    def submit(self, items: list[tuple]) -> None:
        batch = []
        for rec, img, mask in items:
            futs = [self.pool.submit(_write_png, self.out / rec.image, img),
                    self.pool.submit(_write_png, self.out / rec.mask, mask)]
            batch.append((rec, futs))
        self._flush()  # the previous batch, whose writes overlapped this batch's drawing
        self.pending = batch

    def _flush(self) -> None:
        batch, self.pending = self.pending, []
        for rec, futs in batch:
            rec.image_sha256, rec.mask_sha256 = (f.result() for f in futs)
        self._append([rec for rec, _ in batch])

    def _append(self, recs: list[PairRecord]) -> None:
        append_records(self.out, recs, name=self.name)
        for r in recs:
            params = r.params
            self.redraws += int(params.get("redraws", 0))
            for why, k in (params.get("rejected_because") or {}).items():
                self.rejects[why] = self.rejects.get(why, 0) + int(k)
        self.bar.update(len(recs))
        if self.on_records is not None and recs:
            self.on_records(len(recs))

    def close(self) -> None:
        self._flush()

    def abort(self) -> None:
        """Keep the leading records whose PNGs were written completely, then stop the threads."""
        batch, self.pending = self.pending, []
        done = []
        for rec, futs in batch:
            hashes = []
            for f in futs:
                try:
                    hashes.append(f.result())
                except BaseException:
                    hashes.append(None)
            if None in hashes:
                break
            rec.image_sha256, rec.mask_sha256 = hashes
            done.append(rec)
        if done:
            self._append(done)
        self.pool.shutdown(wait=True)
