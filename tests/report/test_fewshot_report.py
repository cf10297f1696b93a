"""fewshot.html: the table says what its numbers are (issue 14.10d: one seed has no spread)."""

from __future__ import annotations

import json
from pathlib import Path

from anomalyforge.report.fewshot import write_fewshot_report


def _doc(seeds: list[int]) -> dict:
    rows, summary = {}, []
    for k in (1, 2):
        for s in seeds:
            loc = {"image": {"auroc": 0.8 + 0.01 * s}, "pixel": {"auroc": 0.9, "ap": 0.4, "aupro": 0.7}}
            goods = [f"/d/{i:03d}.png" for i in range(k)]
            rows[f"s{s}-k{k}-g0"] = {"seed": s, "shots": k, "generated": 0, "goods": goods, "localization": loc}
        spread = 0.005 * (len(seeds) > 1)
        summary.append({"shots": k, "generated": 0, "seeds": len(seeds), "image_auroc": 0.8, "image_auroc_std": spread,
                        "pixel_auroc": 0.9, "pixel_auroc_std": 0.0, "pixel_ap": 0.4, "pixel_ap_std": spread,
                        "pixel_aupro": 0.7, "pixel_aupro_std": spread})
    config = {"shots": [1, 2], "generated": 0, "seeds": seeds, "size": 64, "augment": {"flip": False},
              "diffusion": None, "patchcore": {"max_bank": 1000}}
    return {"category": "bottle", "data": "/d", "profile": "smoke", "config": config, "created": "2026-01-01",
            "version": "0.1.0", "rows": rows, "summary": summary}


def _write(tmp_path: Path, seeds: list[int]) -> str:
    (tmp_path / "fewshot.json").write_text(json.dumps(_doc(seeds)))
    return write_fewshot_report(tmp_path).read_text()


def test_one_seed_shows_no_spread_and_says_one_seed(tmp_path):
    html = _write(tmp_path, [0])
    assert "±" not in html and "1 seeds" not in html
    assert "1 seed" in html and "<td>80.0</td>" in html


def test_several_seeds_show_mean_and_spread(tmp_path):
    html = _write(tmp_path, [0, 1, 2])
    assert "<td>80.0 ± 0.5</td>" in html and "over 3 seeds" in html
