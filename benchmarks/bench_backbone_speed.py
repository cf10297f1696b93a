"""Frozen EfficientNet-Lite stage features: folded inference (`features.folded`) vs the library's forward.

One process runs `--batches` forward passes of the frozen stage extractor (levels 1-3, the
localiser's and PatchCore's features) on random 256 px batches after one warm-up pass, with the
folded path on (the default) or, with `--library`, off (the extractor's `use_folded` forced to
False, so every module runs as `efficientnet_lite_pytorch` defines it). Time the whole process
from outside, the two settings paired, e.g.:

    farm-bench -n 5 --timeout 600 -- .venv/bin/python benchmarks/bench_backbone_speed.py \\
        --vs '.venv/bin/python benchmarks/bench_backbone_speed.py --library'

With `--check` it also prints the largest difference between the two paths relative to the
largest feature magnitude (the tests hold it under 1e-4).
"""

from __future__ import annotations

import argparse

import torch

from anomalyforge.features import backbone
from anomalyforge.features.backbone import BackboneSpec, frozen_extractor


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--library", action="store_true", help="the library's forward (folding off)")
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--arch", default="efficientnet-lite0")
    ap.add_argument("--check", action="store_true", help="print the folded-vs-library difference")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    fx = frozen_extractor(BackboneSpec(name=args.arch, levels=(1, 2, 3)))
    x = torch.rand(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    if args.library or args.check:
        folded = backbone.use_folded
        with torch.no_grad():
            ref = fx(x) if args.check else None
        backbone.use_folded = lambda module: False  # type: ignore[assignment]
        if args.check:
            with torch.no_grad():
                lib = fx(x)
            assert ref is not None
            scale = max(float(t.abs().max()) for t in lib)
            diff = max(float((a - b).abs().max()) for a, b in zip(ref, lib, strict=True))
            print(f"max |folded - library| / max |feature| = {diff / scale:.2e}")
            backbone.use_folded = folded
            return 0
    with torch.no_grad():
        fx(x)  # warm-up
        for _ in range(args.batches):
            fx(x)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
