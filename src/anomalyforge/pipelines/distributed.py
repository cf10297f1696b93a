"""Generation shards and benchmark seeds as Ray tasks, on this machine or on a Ray cluster.

    generate_on_ray(Path("/nfs/data/bottle"), Path("/nfs/runs/bottle_cp"), RayOptions(), shards=8,
                    method="croppaste", n=1000)

`generate_on_ray` plans the run (run.json) in a first task; a generator made of pieces
(`Generator.fit_parts`: DualAnoDiff's LoRAs, one per defect type) has each piece fitted by a task of
its own, in parallel; one more task fits the rest of the state (or joins the pieces) into the run
folder; then one task per shard (`synth.run.generate_run(shard=...)`), each with its own CPU / GPU
budget (`RayOptions`). The driver draws one progress bar over all shards (it counts the records
the shards append to their files) and writes the manifest at the end. A task whose worker dies is
retried by Ray (`max_retries`) and resumes its shard from what it had written, so the result is
the same bytes; calling again resumes the run, like a local run. `map_on_ray` runs a function
once per set of arguments (the benchmark over seeds: one task per seed).

The dataset and the run folder must be at the same path on every node (a network filesystem).
Ray is imported only inside these functions (`# lazy:`): the local backend never pays for it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from anomalyforge.atomic import check_output_dir
from anomalyforge.errors import AnomalyForgeError, ConfigError
from anomalyforge.formats.manifest import MANIFEST, read_pairs, shard_manifest_name
from anomalyforge.synth.merge import assemble_shards
from anomalyforge.synth.run import fit_run, generate_run

BACKENDS = ("local", "ray")
KILL_ONCE_ENV = "ANOMALYFORGE_TEST_KILL_ONCE"  # test hook: a marker file; the first shard task creating it dies
POLL_S = 0.5


@dataclass
class RayOptions:
    """Where the tasks run and what each one gets: `address` of a running cluster (None: start a
    local Ray instance, or use the one this process already started), CPUs and GPUs per task
    (fractions allowed), and how often a task whose worker died is retried."""

    address: str | None = None
    cpus_per_task: float = 1.0
    gpus_per_task: float = 0.0
    max_retries: int = 3

    def __post_init__(self) -> None:
        if self.cpus_per_task <= 0 or self.gpus_per_task < 0:
            raise ConfigError(f"--cpus-per-task must be > 0 and --gpus-per-task >= 0, got "
                              f"{self.cpus_per_task} and {self.gpus_per_task}")
        if self.max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, got {self.max_retries}")

    def task_options(self) -> dict[str, Any]:
        return {"num_cpus": self.cpus_per_task, "num_gpus": self.gpus_per_task, "max_retries": self.max_retries}


def check_backend(backend: str) -> str:
    """`backend` if it is one of BACKENDS, else a ConfigError naming them."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose {' or '.join(BACKENDS)}")
    return backend


@contextmanager
def _connected(options: RayOptions) -> Iterator[Any]:
    """The ray module, connected: to `options.address`, to the instance this process already
    started, or to a new local one (shut down again at the end)."""
    import ray  # lazy: Ray costs seconds to import; only the ray backend needs it

    started = False
    if not ray.is_initialized():
        ray.init(address=options.address, include_dashboard=False, logging_level=logging.WARNING)
        started = True
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def _slots(ray: Any, options: RayOptions) -> int:
    """How many tasks of `options`' size the cluster runs at once."""
    res = ray.cluster_resources()
    n = int(res.get("CPU", 1) // options.cpus_per_task)
    if options.gpus_per_task > 0:
        n = min(n, int(res.get("GPU", 0) // options.gpus_per_task))
    if n < 1:
        raise ConfigError(f"the Ray cluster has {res.get('CPU', 0)} CPUs and {res.get('GPU', 0)} GPUs: "
                          f"no room for a task of {options.cpus_per_task} CPU / {options.gpus_per_task} GPU")
    return n


def _gather(ray: Any, refs: list, bar, count: Callable[[], int] | None = None) -> list:
    """Results of `refs` in order; the bar follows `count()` (or the finished tasks). A task's
    own error (bad data, bad config) is raised as itself, not wrapped in Ray's traceback."""
    pending = list(refs)
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=len(pending), timeout=POLL_S)
            bar.n = count() if count is not None else len(refs) - len(pending)
            bar.refresh()
        return ray.get(refs)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, (AnomalyForgeError, OSError)):
            raise cause from None
        raise


def _line_count(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except OSError:
        return 0


# ---- the tasks (module-level functions: Ray ships them by reference) ------------------------------
def _fit_task(kwargs: dict, fit: bool = True, part: str | None = None) -> dict:
    return fit_run(**kwargs, progress=False, fit=fit, part=part)


def _shard_task(kwargs: dict, shard: str, kill_marker: str | None) -> dict:
    on_records = None
    if kill_marker:  # test hook: die (as a killed worker would) after the first records of the first task

        def on_records(_k: int) -> None:
            try:
                fd = os.open(kill_marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return
            os.close(fd)
            os._exit(1)

    return generate_run(**kwargs, shard=shard, assemble=False, progress=False, on_records=on_records)


def generate_on_ray(data: Path, out: Path, options: RayOptions | None = None, shards: int | None = None,
                    progress: bool = True, filter_config=None, **run_kwargs: Any) -> dict:
    """`synth.run.generate_run(data, out, **run_kwargs)` as Ray tasks: a plan, one fit task per
    piece of the generator's state (if it has pieces), the fit, then `shards` generation tasks
    (default: as many as the cluster runs at once), then the manifest (see module doc). The files
    are byte-identical to a single-process run's. Returns the summary of `generate_run` (pairs and
    kept per type, new pairs, seconds, pairs/s, redraws) plus `shards`."""
    t0 = time.perf_counter()
    options = options or RayOptions()
    if shards is not None and (not isinstance(shards, int) or isinstance(shards, bool) or shards < 1):
        raise ConfigError(f"--shards must be a positive number of tasks, got {shards!r}")
    for key in ("shard", "assemble", "on_records"):
        if key in run_kwargs:
            raise ConfigError(f"generate_on_ray makes the shards itself; {key!r} is not an option here")
    data, out = Path(data).absolute(), Path(out).absolute()  # workers need not share the driver's cwd
    check_output_dir(out, [data])
    kwargs = {"data": data, "out": out, **run_kwargs}
    kill_marker = os.environ.get(KILL_ONCE_ENV) or None
    with _connected(options) as ray:
        fit = ray.remote(_fit_task).options(**options.task_options())
        with tqdm(disable=True) as quiet:
            parts = list(_gather(ray, [fit.remote(kwargs, False)], quiet)[0]["parts"])
        with tqdm(total=len(parts) + 1, desc="fit", unit="task", disable=not progress) as bar:
            if parts:  # each piece on its own worker (its own GPU with --gpus-per-task 1)
                _gather(ray, [fit.remote(kwargs, True, p) for p in parts], bar)
            planned = _gather(ray, [fit.remote(kwargs)], bar, lambda: len(parts))[0]
            bar.update(1)
        count = shards or _slots(ray, options)
        total = int(planned["expected_pairs"])
        files = [out / MANIFEST] + [out / shard_manifest_name(i, count) for i in range(count)]
        task = ray.remote(_shard_task).options(**options.task_options())
        refs = [task.remote(kwargs, f"{i}/{count}", kill_marker) for i in range(count)]
        with tqdm(total=total, desc=f"generate ({count} shards)", unit="pair", disable=not progress) as bar:
            parts = _gather(ray, refs, bar, lambda: min(total, sum(_line_count(f) for f in files)))
    assemble_shards(out, filter_config=filter_config, progress=progress)
    per_type: dict[str, int] = {}
    kept: dict[str, int] = {}
    for r in read_pairs(out, include_rejected=True):
        per_type[r.defect_type] = per_type.get(r.defect_type, 0) + 1
        kept[r.defect_type] = kept.get(r.defect_type, 0) + (not r.rejected)
    new = sum(p["new"] for p in parts)
    secs = time.perf_counter() - t0
    rejects: dict[str, int] = {}
    for p in parts:
        for why, k in p.get("rejected_drafts", {}).items():
            rejects[why] = rejects.get(why, 0) + int(k)
    first = parts[0] if parts else {}
    return {"run": str(out), "method": first.get("method", run_kwargs.get("method", "croppaste")),
            "category": first.get("category", ""), "pairs": per_type, "kept": kept, "new": new,
            "seconds": round(secs, 3), "pairs_per_s": round(new / secs, 2) if secs else 0.0,
            "redraws": sum(p.get("redraws", 0) for p in parts), "rejected_drafts": rejects, "shards": count}


def map_on_ray(fn: Callable[..., Any], calls: list[dict[str, Any]], options: RayOptions | None = None,
               progress: bool = True, desc: str = "tasks") -> list[Any]:
    """`[fn(**kw) for kw in calls]`, one Ray task each (with `options`' CPU / GPU budget and
    retries), in the order of `calls`. `fn` must be importable on the workers (a module-level
    function of an installed package)."""
    options = options or RayOptions()
    with _connected(options) as ray:
        task = ray.remote(fn).options(**options.task_options())
        refs = [task.remote(**kw) for kw in calls]
        with tqdm(total=len(refs), desc=desc, unit="task", disable=not progress) as bar:
            return _gather(ray, refs, bar)
