"""Sharded generation (`generate --shard I/N`) and `merge` on real bottle images: shards in one
shared folder and shards in separate folders merged give the single-process run's bytes; merge
refuses parts of different runs and writes nothing then; the local backend never imports Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from synthdata import make_small_mvtec

from anomalyforge import cli
from anomalyforge.errors import ConfigError, DataError
from anomalyforge.synth.merge import merge_runs
from anomalyforge.synth.run import generate_run
from anomalyforge.synth.shards import Shard, parse_shard, shard_pairs

KW = dict(n=18, size=32, progress=False, seed=5)  # 18 > croppaste's batch of 16: two blocks per type
REPO = Path(__file__).resolve().parents[2]


def _files(run: Path) -> dict[str, bytes]:
    return {p.relative_to(run).as_posix(): p.read_bytes() for p in sorted(run.rglob("*"))
            if p.is_file() and (p.relative_to(run).parts[0] in ("images", "masks")
                                or p.name in ("manifest.jsonl", "run.json") and p.parent == run)}


@pytest.fixture(scope="module")
def single(small_bottle, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("single") / "run"
    generate_run(small_bottle, out, **KW)
    return out


def test_shards_partition_the_pairs_in_blocks():
    types, counts = ["a", "b", "c"], {"a": 40, "b": 5, "c": 17}
    everything = shard_pairs(types, counts, 16, None)
    parts = [shard_pairs(types, counts, 16, Shard(i, 4)) for i in range(4)]
    assert sorted(p for part in parts for p in part) == sorted(everything) and len(everything) == 62
    for part in parts:  # whole blocks of 16 indices, never split between shards
        assert all(sum(1 for q in part if q[0] == t and q[1] // 16 == i // 16) in (16, counts[t] % 16)
                   for t, i in part)
    assert parse_shard(" 2/4 ") == Shard(2, 4) and str(Shard(2, 4)) == "2/4"
    for bad in ("4/4", "1-4", "-1/2", "0/0"):
        with pytest.raises(ConfigError, match="I/N"):
            parse_shard(bad)


def test_shards_into_one_folder_are_the_single_run(single, small_bottle, tmp_path):
    out = tmp_path / "shared"
    for i in (2, 0, 1):  # any order; the shard completing the set writes the manifest
        s = generate_run(small_bottle, out, shard=f"{i}/3", **KW)
        assert sum(s["pairs"].values()) == s["new"] > 0  # the shard's own pairs
        assert json.loads((out / "run.json").read_text())["complete"] is (i == 1)
    assert _files(out) == _files(single)
    assert sorted(p.name for p in (out / "shards").iterdir()) == ["0-of-3.jsonl", "1-of-3.jsonl", "2-of-3.jsonl"]


def test_shards_writing_one_folder_at_the_same_time_are_the_single_run(single, small_bottle, tmp_path):
    """Two shards start together (fit, run.json, records, manifest race): same files, no temp left."""
    out = tmp_path / "together"
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda i: generate_run(small_bottle, out, shard=f"{i}/2", **KW), range(2)))
    assert _files(out) == _files(single)
    assert not list(out.rglob(".*.tmp")) and not list(out.glob(".state.*"))


def test_separate_shards_merge_to_the_single_run_and_a_missing_one_can_follow(single, small_bottle, tmp_path,
                                                                               capsys):
    parts = [tmp_path / f"part{i}" for i in range(2)]
    for i, part in enumerate(parts):
        assert cli.main(["generate", "--data", str(small_bottle), "--out", str(part), "--shard", f"{i}/2",
                         "--n", "18", "--size", "32", "--seed", "5", "--no-progress"]) == 0
    assert cli.main(["merge", *map(str, parts), "--out", str(tmp_path / "merged")]) == 0
    assert "54 of 54 pairs from 2 run(s) (complete)" in capsys.readouterr().out
    assert _files(tmp_path / "merged") == _files(single)
    assert (tmp_path / "merged" / "state" / "FIT_DONE").is_file()

    # only one part: an incomplete run, which the missing shard then completes in place
    assert cli.main(["merge", str(parts[0]), "--out", str(tmp_path / "half")]) == 0
    assert "incomplete" in capsys.readouterr().out
    assert json.loads((tmp_path / "half" / "run.json").read_text())["complete"] is False
    generate_run(small_bottle, tmp_path / "half", shard="1/2", **KW)
    assert _files(tmp_path / "half") == _files(single)


def test_merge_refuses_parts_of_different_runs(single, small_bottle, tmp_path):
    other_seed = tmp_path / "seed6"
    generate_run(small_bottle, other_seed, shard="1/2", **{**KW, "seed": 6})
    with pytest.raises(ConfigError, match=r"seed6: not a part of the same run .*\(seed differ\)"):
        merge_runs([single, other_seed], tmp_path / "m1")
    assert not (tmp_path / "m1").exists()  # nothing written

    fewer = tmp_path / "data_fewer"  # another training split: the lowest-numbered third of fewer defects
    make_small_mvtec(_real(small_bottle), fewer / "bottle", n_defect=6)
    other_split = tmp_path / "split"
    generate_run(fewer / "bottle", other_split, shard="1/2", **KW)
    with pytest.raises(ConfigError, match="training"):
        merge_runs([single, other_split], tmp_path / "m2")
    assert not (tmp_path / "m2").exists()

    broken = tmp_path / "broken"  # a part whose PNG changed after it was recorded
    generate_run(small_bottle, broken, shard="0/2", **KW)
    png = next((broken / "images").rglob("*.png"))
    png.write_bytes(png.read_bytes()[:-10])
    with pytest.raises(DataError, match="changed since it was written"):
        merge_runs([broken, single], tmp_path / "m3")
    assert not (tmp_path / "m3").exists()
    assert cli.main(["merge", str(single), str(other_seed), "--out", str(tmp_path / "m4")]) == 2
    assert not (tmp_path / "m4").exists()


def _real(small: Path) -> Path:
    """The real bottle folder the small copy links to."""
    first = next((small / "train" / "good").iterdir())
    return Path(os.readlink(first)).parents[2]


def test_the_local_backend_does_not_import_ray(small_bottle, tmp_path):
    code = ("import sys; from anomalyforge import cli; "
            f"assert cli.main(['generate', '--data', {str(small_bottle)!r}, '--out', {str(tmp_path / 'r')!r}, "
            "'--n', '2', '--size', '32', '--types', 'broken_large', '--no-progress']) == 0; "
            "assert 'ray' not in sys.modules, 'ray imported'")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "r" / "manifest.jsonl").is_file()
