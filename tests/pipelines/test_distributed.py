"""The Ray backend on a local Ray instance this module starts (2 CPUs): a sharded croppaste run and
a tiny-model AnomalyDiffusion run are byte-identical to the single-process run, a worker killed
mid-shard is retried with identical output, DualAnoDiff's per-defect-type fit pieces run as tasks
(and resume from a piece fitted before), and a benchmark over seeds (one task per seed, from the
CLI) gives the local loop's figures."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from anomalyforge import cli
from anomalyforge.errors import ConfigError
from anomalyforge.pipelines.distributed import KILL_ONCE_ENV, RayOptions, generate_on_ray, map_on_ray
from anomalyforge.pipelines.seeds import run_benchmark_seeds
from anomalyforge.seeds import pair_seed
from anomalyforge.synth.run import fit_run, generate_run

ray = pytest.importorskip("ray")
CP = dict(method="croppaste", n=18, size=64, seed=5)  # two blocks of croppaste's batch of 16 per type


def _files(run: Path) -> dict[str, bytes]:
    return {p.relative_to(run).as_posix(): p.read_bytes() for p in sorted(run.rglob("*"))
            if p.is_file() and (p.relative_to(run).parts[0] in ("images", "masks")
                                or p.name in ("manifest.jsonl", "run.json") and p.parent == run)}


def _small(src: Path, dst: Path, types: tuple[str, ...], n_good: int = 6, n_defect: int = 3) -> Path:
    """A few real bottle files linked into an MVTec AD layout."""
    for split, k in (("train", n_good), ("test", 2)):
        for p in sorted((src / split / "good").glob("*.png"))[:k]:
            (dst / split / "good").mkdir(parents=True, exist_ok=True)
            os.symlink(p, dst / split / "good" / p.name)
    for t in types:
        for p in sorted((src / "test" / t).glob("*.png"))[:n_defect]:
            for f, d in ((p, dst / "test" / t), (src / "ground_truth" / t / f"{p.stem}_mask.png",
                                                  dst / "ground_truth" / t)):
                d.mkdir(parents=True, exist_ok=True)
                os.symlink(f, d / f.name)
    return dst


@pytest.fixture(scope="module")
def cluster():
    """One local Ray instance for the module (its start-up takes seconds)."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def data(bottle_dir, tmp_path_factory) -> Path:
    return _small(bottle_dir, tmp_path_factory.mktemp("data") / "bottle", ("broken_large", "contamination"))


@pytest.fixture(scope="module")
def single(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("single") / "cp"
    generate_run(data, out, progress=False, **CP)
    return out


def test_sharded_croppaste_on_ray_is_the_single_run_and_resumes(cluster, data, single, tmp_path):
    s = generate_on_ray(data, tmp_path / "ray", shards=3, progress=False, **CP)
    assert s["shards"] == 3 and s["new"] == 36 and s["pairs"] == {"broken_large": 18, "contamination": 18}
    assert _files(tmp_path / "ray") == _files(single)
    again = generate_on_ray(data, tmp_path / "ray", shards=2, progress=False, **CP)  # resumes: nothing to draw
    assert again["new"] == 0 and _files(tmp_path / "ray") == _files(single)


def test_a_worker_killed_mid_shard_is_retried_with_identical_output(cluster, data, single, tmp_path, monkeypatch):
    marker = tmp_path / "killed"
    monkeypatch.setenv(KILL_ONCE_ENV, str(marker))  # the first shard task dies after its first records
    s = generate_on_ray(data, tmp_path / "ray", shards=2, progress=False, **CP)
    assert marker.is_file()  # a worker did die mid-task ...
    assert s["new"] < 36  # ... after writing pairs that its retry kept
    assert _files(tmp_path / "ray") == _files(single)


@pytest.mark.slow  # Ray workers import diffusers / transformers: about a minute on the contended 2-core machine
def test_tiny_anomalydiffusion_on_ray_is_the_single_run(cluster, data, tmp_path):
    from anomalyforge.diffusion.tiny import make_tiny_model

    model = make_tiny_model(tmp_path / "tiny", seed=0)
    params = dict(base_model=str(model), device="cpu", resolution=32, fit_steps=2, mask_fit_steps=1, train_batch=2,
                  sampler_steps=2, spatial_backbone="tiny", spatial_fpn_channels=16, mask_tries=1, progress=False)
    kw = dict(method="anomalydiffusion", n=5, size=32, seed=1, params=params)  # batch 4: blocks 0-3 and 4
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the Ray tasks (1 CPU each) run one thread
    try:
        generate_run(data, tmp_path / "single", progress=False, **kw)
    finally:
        torch.set_num_threads(threads)
    s = generate_on_ray(data, tmp_path / "ray", RayOptions(cpus_per_task=1), shards=2, progress=False, **kw)
    assert s["new"] == 10
    assert _files(tmp_path / "ray") == _files(tmp_path / "single")


@pytest.mark.slow  # as above; the diffusers import is already paid by the workers of the test above
def test_tiny_dualanodiff_fits_each_defect_type_in_a_task_of_its_own(cluster, data, tmp_path):
    from anomalyforge.diffusion.tiny import make_tiny_model

    model = make_tiny_model(tmp_path / "tiny", seed=0)
    params = dict(base_model=str(model), device="cpu", resolution=32, rank=4, fit_steps=2, train_batch=2,
                  sampler_steps=2, mask_tries=1, progress=False)
    kw = dict(method="dualanodiff", n=5, size=32, seed=1, params=params)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        generate_run(data, tmp_path / "single", progress=False, **kw)
        # one defect type fitted beforehand, as a killed run leaves it: the Ray run fits the other in a task
        planned = fit_run(data, tmp_path / "ray", progress=False, fit=False, **kw)
        assert planned["parts"] == ["broken_large", "contamination"]
        fit_run(data, tmp_path / "ray", progress=False, part="broken_large", **kw)
    finally:
        torch.set_num_threads(threads)
    assert [p.name for p in (tmp_path / "ray" / "state-parts").iterdir()] == ["0"]
    assert not (tmp_path / "ray" / "state").exists()
    s = generate_on_ray(data, tmp_path / "ray", RayOptions(cpus_per_task=1), shards=2, progress=False, **kw)
    assert s["new"] == 10
    assert _files(tmp_path / "ray") == _files(tmp_path / "single")
    assert not (tmp_path / "ray" / "state-parts").exists()  # joined into state/ and removed


def test_a_task_error_is_the_error_itself(cluster, data, tmp_path):
    with pytest.raises(ConfigError, match="unknown defect type"):  # not Ray's wrapped traceback
        generate_on_ray(data, tmp_path / "bad", progress=False, **{**CP, "types": ["nope"]})
    assert not (tmp_path / "bad").exists()


def test_one_task_per_call_maps_like_a_loop(cluster):
    calls = [dict(run_seed=s, defect_type="crack", index=i) for s in (0, 1) for i in range(3)]
    assert map_on_ray(pair_seed, calls, progress=False) == [pair_seed(**c) for c in calls]


@pytest.mark.slow  # two smoke benchmarks, each seed's in a Ray task and then in a local loop
def test_benchmark_seeds_on_ray_are_the_local_loop(cluster, data, tmp_path):
    kw = dict(methods=["patchcore"], seeds=[0, 1], profile="smoke", progress=False)
    assert cli.main(["benchmark", "--data", str(data), "--out", str(tmp_path / "ray"), "--methods", "patchcore",
                     "--seeds", "0,1", "--profile", "smoke", "--backend", "ray"]) == 0  # the CLI's ray path
    assert all((tmp_path / "ray" / f"seed-{s}" / "results.json").is_file() for s in (0, 1))
    on_ray = json.loads((tmp_path / "ray" / "summary.json").read_text())
    local = run_benchmark_seeds(data, tmp_path / "local", **kw)
    assert on_ray["seeds"] == local["seeds"] == [0, 1]
    assert on_ray["figures"] == local["figures"]


def test_ray_options_need_the_ray_backend(data, tmp_path, capsys):
    base = ["--data", str(data), "--out", str(tmp_path / "o")]
    assert cli.main(["generate", *base, "--address", "ray://x:10001"]) == 2
    assert "--address needs --backend ray" in capsys.readouterr().err
    assert cli.main(["generate", *base, "--backend", "ray", "--shard", "0/2"]) == 2
    assert "--shard with --backend ray" in capsys.readouterr().err
    assert cli.main(["benchmark", *base, "--methods", "patchcore", "--backend", "ray"]) == 2
    assert "give --seeds" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
