"""write_report on a small finished benchmark built from real bottle test images."""

from __future__ import annotations

import base64
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest

from anomalyforge.errors import DataError
from anomalyforge.report.html import REPORT_FILE, select_samples, write_report
from anomalyforge.report.published import CAVEAT
from anomalyforge.report.results import load_maps

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _Checker(HTMLParser):
    """Collects tags, images and table cells; records any unbalanced end tag."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.imgs: list[str] = []
        self.ids: set[str] = set()
        self.hrefs: list[str] = []
        self.tags: set[str] = set()
        self.bold_cells: list[str] = []
        self._in_best = False

    def handle_starttag(self, tag, attrs):  # type: ignore[no-untyped-def]
        a = dict(attrs)
        self.tags.add(tag)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        if tag == "a" and "href" in a:
            self.hrefs.append(a["href"])
        if tag == "td" and a.get("class") == "best":
            self._in_best = True
            self.bold_cells.append("")
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):  # type: ignore[no-untyped-def]
        if tag == "td":
            self._in_best = False
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> (open: {self.stack[-3:]})")
        else:
            self.stack.pop()

    def handle_data(self, data):  # type: ignore[no-untyped-def]
        if self._in_best:
            self.bold_cells[-1] += data.strip()


@pytest.fixture(scope="module")
def written(report_bench: Path) -> tuple[Path, str, _Checker]:
    out = write_report(report_bench)
    text = out.read_text(encoding="utf-8")
    checker = _Checker()
    checker.feed(text)
    checker.close()
    return out, text, checker


def test_default_location_and_valid_html(written, report_bench):
    out, text, checker = written
    assert out == report_bench / REPORT_FILE
    assert text.lstrip().startswith("<!DOCTYPE html>")
    assert checker.errors == []
    assert checker.stack == []  # every element closed
    assert {"table", "style", "img", "section"} <= checker.tags
    assert not list(report_bench.glob(".*.tmp"))  # atomic write leaves no temp file


def test_self_contained_with_decodable_images(written):
    _, text, checker = written
    assert "<link" not in text and "<script" not in text
    assert not re.search(r"""(src|href)=["']?(https?:|//|file:)""", text)
    # 2 methods x 8 tiles x 2 panels + 2 generated pairs x 2 + per-method curves (2) + comparison (1)
    assert len(checker.imgs) == 2 * 8 * 2 + 2 * 2 + 2 + 1
    for src in checker.imgs:
        assert src.startswith("data:image/png;base64,")
        img = cv2.imdecode(np.frombuffer(base64.b64decode(src.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and img.shape[0] >= 64 and img.std() > 0
    # internal links point at existing anchors
    for href in checker.hrefs:
        assert href.startswith("#") and href[1:] in checker.ids


def test_header_and_split(written):
    _, text, _ = written
    for s in ("bottle", "tiny", "2026-11-25T08:00:00+00:00", "0.1.0", "broken_small", "209"):
        assert s in text
    # train/test counts of each type are in one row
    assert re.search(r"<td class=\"l\">broken_small</td><td>8</td><td>3</td>", text)


def test_results_table_values_and_best(written, report_bench):
    _, text, checker = written
    res = json.loads((report_bench / "results.json").read_text())
    a, b = res["methods"]["cutpaste_like"], res["methods"]["patchcore"]
    for m in (a, b):
        for key in ("auroc", "ap", "f1_max", "aupro"):
            assert f">{100 * m['localization']['pixel'][key]:.1f}<" in text
    # the higher pixel AUROC / AUPRO and the lower time / memory are bold
    better = a if a["localization"]["pixel"]["auroc"] > b["localization"]["pixel"]["auroc"] else b
    assert f"{100 * better['localization']['pixel']['auroc']:.1f}" in checker.bold_cells
    assert "40.0 s" in checker.bold_cells and "900 MB" in checker.bold_cells
    assert "95.0 s" not in checker.bold_cells
    # classification accuracy (8 of 9) for the method that has it, a dash for the baseline
    assert f"{100 * 8 / 9:.1f}" in text
    assert re.search(r'<tr class="baseline">\s*<td class="l"><a href="#m-patchcore">patchcore</a>', text)
    # generation quality: IS and IC-LPIPS of the generated method (not bold: nothing to compare
    # with), the real defects' IS beside them, per-type values in the method's section
    assert "<td>1.234</td><td>0.088</td>" in text and "1.234" not in checker.bold_cells
    assert "real few-shot defects themselves have IS 1.432" in text
    assert "<td>1.111</td><td>0.056</td>" in text


def test_published_table_and_caveat(written):
    _, text, _ = written
    for v in ("96.7", "80.2", "94.5", "67.4", "99.4", "94.1", "99.7", "96.2", "90.7", "95.4"):
        assert f"<td>{v}</td>" in text
    assert "AnomalyDiffusion (Hu et al., AAAI 2024)" in text and "GAA (2025)" in text
    assert CAVEAT.split(";")[0] in text
    # DRAEM-generated has no published accuracy: shown as a dash, not invented
    row = re.search(r"DRAEM-generated</td>(.*?)</tr>", text, re.S).group(1)
    assert "—" in row


def test_per_method_sections(written):
    _, text, _ = written
    assert "Per defect type" in text and "Defect-type confusion matrix" in text
    assert "No defect-type classification for this method." in text  # patchcore
    assert "The defect-type classifier was trained on generated pairs." in text
    assert "Baseline: trained without generated data" in text
    assert "broken_large/005.png" in text and "good/001.png" in text
    assert "broken_large/008.png" not in text  # only the first two per type by file name
    assert "mask 3.54% of image" in text  # the generated blob mask (2 pairs)
    assert "predicted <span class=\"wrong\">broken_small</span>" in text  # the one misclassification


def test_sample_selection_is_fixed_by_path(report_bench):
    maps, note = load_maps(report_bench / "methods" / "patchcore" / "maps.npz")
    assert note is None
    chosen = select_samples(maps)
    names = [str(Path(maps.paths[i]).relative_to(Path(maps.paths[i]).parents[1])) for i in chosen]
    assert names == ["broken_large/005.png", "broken_large/007.png", "broken_small/005.png",
                     "broken_small/007.png", "contamination/005.png", "contamination/007.png",
                     "good/001.png", "good/003.png"]


def test_same_input_same_file(report_bench, tmp_path, written):
    again = write_report(report_bench, tmp_path / "sub" / "again.html")
    assert again.read_bytes() == written[0].read_bytes()


def test_missing_pieces_degrade_gracefully(report_bench, tmp_path):
    bench = Path(shutil.copytree(report_bench, tmp_path / "b"))
    (bench / "methods" / "patchcore" / "maps.npz").unlink()
    shutil.rmtree(bench / "runs" / "cutpaste_like" / "images")
    res = json.loads((bench / "results.json").read_text())
    res["methods"]["failed_one"] = {"status": "failed", "kind": "synthetic", "model": "lite_unet",
                                   "run": "runs/failed_one"}
    res["methods"]["cutpaste_like"]["classification"]["confusion"] = "garbled"
    (bench / "results.json").write_text(json.dumps(res))
    # a test image that moved away: grey placeholder
    m = dict(np.load(bench / "methods" / "cutpaste_like" / "maps.npz"))
    m["paths"] = np.array([p.replace("broken_large", "nowhere") for p in m["paths"].astype(str)])
    np.savez(bench / "methods" / "cutpaste_like" / "maps.npz", **m)

    text = write_report(bench).read_text()
    checker = _Checker()
    checker.feed(text)
    assert checker.errors == []
    assert "No prediction maps: maps.npz not found" in text
    assert "2 generated pair(s) listed in" in text
    assert "Status is &#39;failed&#39;" in text and "No generated run found" in text
    assert "no usable confusion matrix" in text
    assert "2 test image(s) not found" in text
    assert "failed_one" in text


def test_missing_results_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match=r"results\.json.*not a finished benchmark"):
        write_report(tmp_path)
    assert not (tmp_path / REPORT_FILE).exists()
    with pytest.raises(DataError, match="benchmark folder not found"):
        write_report(tmp_path / "absent")


def test_malformed_results_is_a_clear_error(tmp_path):
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(DataError, match=r"results\.json: not valid JSON"):
        write_report(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps({"category": "x"}))
    with pytest.raises(DataError, match="missing the 'methods' object"):
        write_report(tmp_path)
    assert not (tmp_path / REPORT_FILE).exists()
