"""Size of model folders' weights with each distinct tensor stored once (`formats.model.write_weights`).

    PYTHONPATH=src .venv/bin/python benchmarks/bench_model_size.py MODEL [MODEL ...] [--out FILE.json]

For every model folder: the weights file as it is, the bytes of all its tensors, and the file
`write_weights` writes for the same tensors now (into a temporary folder); the rewritten tensors
are checked equal to the originals. Folders written before the deduplication show what it saves.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from anomalyforge.formats.model import WEIGHTS, ModelInfo, _aliases, read_weights, write_weights

MIB = 2 ** 20


def measure(folder: Path) -> dict:
    """The sizes (MiB) and counts of one model folder's weights, as stored and as rewritten."""
    info = ModelInfo.read(folder)
    tensors = read_weights(folder, info.weights)
    with tempfile.TemporaryDirectory() as tmp:
        ref = write_weights(tmp, tensors)
        data = (Path(tmp) / WEIGHTS).read_bytes()
        back = read_weights(tmp, ref)
    assert set(back) == set(tensors) and all(np.array_equal(back[k], v) for k, v in tensors.items())
    prefixes: dict[str, int] = {}
    for k in _aliases(data):
        prefixes[k.split(".")[0]] = prefixes.get(k.split(".")[0], 0) + 1
    return {"model": str(folder), "classifier_input": info.config.get("cls_input", "image"),
            "n_tensors": len(tensors), "aliased": len(_aliases(data)), "aliased_by_part": prefixes,
            "file_mib": round((folder / info.weights.file).stat().st_size / MIB, 2),
            "tensor_mib": round(sum(v.nbytes for v in tensors.values()) / MIB, 2),
            "rewritten_mib": round(len(data) / MIB, 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    rows = [measure(m) for m in args.models]
    print("| model | classifier | tensors | aliased | all tensors MiB | file MiB | rewritten MiB |\n"
          "|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['classifier_input']} | {r['n_tensors']} | {r['aliased']} | "
              f"{r['tensor_mib']} | {r['file_mib']} | {r['rewritten_mib']} |")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
