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
        self.open: list[dict] = []  # attributes of the open elements
        self.tables: list[tuple[dict, dict]] = []  # (table attrs, attrs of its parent element)
        self.headers: list[str] = []
        self._in_th = False

    def handle_starttag(self, tag, attrs):  # type: ignore[no-untyped-def]
        a = dict(attrs)
        self.tags.add(tag)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        if tag == "a" and "href" in a:
            self.hrefs.append(a["href"])
        if tag == "table":
            self.tables.append((a, self.open[-1] if self.open else {}))
        if tag == "th":
            self._in_th = True
            self.headers.append("")
        if tag == "td" and a.get("class") == "best":
            self._in_best = True
            self.bold_cells.append("")
        if tag not in VOID:
            self.stack.append(tag)
            self.open.append({"tag": tag, **a})

    def handle_endtag(self, tag):  # type: ignore[no-untyped-def]
        if tag == "td":
            self._in_best = False
        if tag == "th":
            self._in_th = False
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> (open: {self.stack[-3:]})")
        else:
            self.stack.pop()
            self.open.pop()

    def handle_data(self, data):  # type: ignore[no-untyped-def]
        if self._in_best:
            self.bold_cells[-1] += data.strip()
        if self._in_th:
            self.headers[-1] += data.strip()


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
    # + one heat-scale bar per method (2)
    assert len(checker.imgs) == 2 * 8 * 2 + 2 * 2 + 2 + 1 + 2
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
    # the higher pixel AUROC / AUPRO and the lower time are bold
    better = a if a["localization"]["pixel"]["auroc"] > b["localization"]["pixel"]["auroc"] else b
    assert f"{100 * better['localization']['pixel']['auroc']:.1f}" in checker.bold_cells
    assert "40.0 s" in checker.bold_cells
    assert "95.0 s" not in checker.bold_cells
    # classification accuracy (8 of 9) for the method that has it, a dash for the baseline
    assert f"{100 * 8 / 9:.1f}" in text
    assert re.search(r'<tr class="baseline">\s*<td class="l"><a href="#m-patchcore">patchcore</a>', text)
    # generation quality: IS and IC-LPIPS of the generated method (not bold: nothing to compare
    # with), the real defects' IS beside them, per-type values in the method's section
    assert "<td>1.234</td><td>0.088</td>" in text and "1.234" not in checker.bold_cells
    assert "real few-shot defects themselves have IS 1.432" in text
    assert "<td>1.111</td><td>0.056</td>" in text


def test_no_per_method_memory_column(written):
    """Issue 14.10b: peak_rss_mb is the process's peak so far, not a method's: never a column, never bold."""
    _, text, checker = written
    assert "peak memory" not in checker.headers and not any("MB" in c for c in checker.bold_cells)
    assert "<span>peak memory</span>" not in text  # not in the method sections either
    # shown once, for what it is: the whole benchmark process (the larger of 900 and 1400 MB)
    assert "process peak memory (whole benchmark)</span>1,400 MB" in text


def test_wide_tables_scroll_inside_the_page(written):
    """Issue 14.10a: at 1280-1400 px the results table ran off the page (no scroll, columns cut).
    Every table sits in a box that scrolls sideways, so no column is ever cut off."""
    _, text, checker = written
    assert checker.tables
    for table, parent in checker.tables:
        assert parent.get("tag") == "div" and "scroll" in parent.get("class", "").split(), (table, parent)
    results = [parent for table, parent in checker.tables if "results" in table.get("class", "").split()]
    assert len(results) == 1 and results[0].get("id") == "results-table"
    css = re.search(r"<style>(.*?)</style>", text, re.S).group(1)
    rule = re.search(r"\.scroll\s*\{([^}]*)\}", css).group(1)
    assert re.search(r"overflow-x:\s*auto", rule) and re.search(r"max-width:\s*100%", rule)
    # the flex rows may shrink below their content's width (else the box grows instead of scrolling)
    assert re.search(r"\.row > div\s*\{[^}]*min-width:\s*0", css)
    # the results table's cells are narrower than the other tables' and the 'cost' group has only time
    assert re.search(r"table\.results th, table\.results td\s*\{\s*padding:\s*4px 6px", css)


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


def test_the_classifier_choice_is_stated_with_its_fold_scores(report_bench, tmp_path):
    bench = Path(shutil.copytree(report_bench, tmp_path / "b"))
    res = json.loads((bench / "results.json").read_text())
    res["methods"]["cutpaste_like"]["classification"]["choice"] = {
        "cls_input": "choose", "chosen": "region", "accuracy": {"image": 0.8095, "region": 0.8571},
        "k": 3, "n_defects": 22}
    (bench / "results.json").write_text(json.dumps(res))
    text = write_report(bench).read_text()
    assert ("It looks at the region the map marks: chosen on the 3 k-fold maps of the 22 real few-shot "
            "training defects (fold accuracy: whole image 81.0, map region 85.7).") in text
    assert "On the test split" not in text
    cls = res["methods"]["cutpaste_like"]["classification"]
    cls["choice"] = {"cls_input": "choose", "chosen": "ensemble", "k": 3, "n_defects": 22,
                     "accuracy": {"image": 0.8095, "region": 0.8571, "ensemble": 0.9048}}
    cls["candidates_test"] = {"image": 0.878, "region": 0.9268, "ensemble": 0.9024}
    (bench / "results.json").write_text(json.dumps(res))
    text = write_report(bench).read_text()
    assert ("It looks at the whole image and the region the map marks, averaged: chosen on the 3 k-fold maps "
            "of the 22 real few-shot training defects (fold accuracy: whole image 81.0, map region 85.7, "
            "both averaged 90.5).") in text
    assert ("On the test split, after the choice (which never reads it): whole image 87.8, map region 92.7, "
            "both averaged 90.2.") in text


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


def _heat_tile(text: str, method: str, name: str) -> np.ndarray:
    """The decoded heat-map picture of test image `name` (e.g. 'good/001.png') in `method`'s section."""
    sec = re.search(rf'<section class="method" id="m-{method}">(.*?)</section>', text, re.S).group(1)
    src = re.search(rf'<img src="(data:image/png;base64,[^"]+)" alt="anomaly map of {re.escape(name)}">', sec).group(1)
    bgr = cv2.imdecode(np.frombuffer(base64.b64decode(src.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
    return bgr[..., ::-1]


@pytest.fixture(scope="module")
def good_level_bench(report_bench: Path, tmp_path_factory) -> tuple[Path, dict]:
    """The report bench with one method's maps as a fused model's look: good pixels sit in a narrow
    band (0.55-0.65) well above the map's low tail, defects are at 0.95. broken_large/005 is hot only
    in its top-right corner (and has no outline), to see where a map is drawn."""
    bench = Path(shutil.copytree(report_bench, tmp_path_factory.mktemp("goodlevel") / "b"))
    npz = bench / "methods" / "cutpaste_like" / "maps.npz"
    z = dict(np.load(npz))
    rng = np.random.default_rng(3)
    maps = rng.uniform(0.55, 0.65, z["maps"].shape).astype(np.float32)
    maps[z["masks"] > 0] = 0.95
    maps[z["labels"] == 1, :2, :2] = 0.0  # a low tail, as the squashed fused score has
    paths = [str(p) for p in z["paths"]]
    k = next(i for i, p in enumerate(paths) if p.endswith("broken_large/005.png"))
    maps[k] = rng.uniform(0.55, 0.65, maps[k].shape)
    maps[k, :16, 48:] = 0.95  # top right
    z["masks"][k] = 0
    z["maps"] = maps.astype(np.float16)
    np.savez_compressed(npz, **z)
    res = json.loads((bench / "results.json").read_text())
    held = rng.uniform(0.55, 0.65, (5, 64, 64)).astype(np.float32)  # held-out good training images
    scale = {"lo": float(np.median(held)), "hi": float(np.quantile(held, 0.999)), "n_images": 5}
    res["methods"]["cutpaste_like"]["display_scale"] = scale
    (bench / "results.json").write_text(json.dumps(res))
    return bench, scale


def _mean(px: np.ndarray) -> np.ndarray:
    return px.reshape(-1, 3).astype(float).mean(0)


def test_heat_maps_use_the_good_image_scale_and_say_so(good_level_bench):
    """Issue 14.10c: drawn on the test maps' own range a good image looked red; on the scale anchored at
    held-out good TRAINING images (0 = median, 1 = 99.9th percentile) it is blue, and the figure says so."""
    bench, scale = good_level_bench
    text = write_report(bench).read_text()
    r, _, b = _mean(_heat_tile(text, "cutpaste-like", "good/001.png")[48:144, 48:144])
    assert b > r + 20  # a good image is drawn cold
    lo, hi = f"{scale['lo']:.4g}", f"{scale['hi']:.4g}"
    assert (f"0 = {lo} (median), 1 = {hi} (99.9th percentile) of the pixel scores of 5 held-out good training "
            "images") in text
    assert re.search(r'<img class="scale" src="data:image/png;base64,[^"]+" alt="heat scale of cutpaste_like', text)


def test_asymmetric_map_is_drawn_where_it_is_in_the_report(good_level_bench):
    """Issue 21: maps.npz -> report tile keeps rows as rows: a top-right map is hot top right only."""
    bench, _ = good_level_bench
    text = write_report(bench, bench / "r2.html").read_text()
    tile = _heat_tile(text, "cutpaste-like", "broken_large/005.png")  # 192 px for a 64 px map: 3x
    top_right, bottom_left = _mean(tile[6:42, 150:186]), _mean(tile[150:186, 6:42])
    top_left, bottom_right = _mean(tile[6:42, 6:42]), _mean(tile[150:186, 150:186])
    assert top_right[0] > top_right[2] + 40
    for corner in (bottom_left, top_left, bottom_right):
        assert corner[2] > corner[0] + 20


def test_no_recorded_scale_draws_no_heat_maps(report_bench, tmp_path):
    bench = Path(shutil.copytree(report_bench, tmp_path / "b"))
    res = json.loads((bench / "results.json").read_text())
    del res["methods"]["patchcore"]["display_scale"]
    (bench / "results.json").write_text(json.dumps(res))
    text = write_report(bench).read_text()
    sec = re.search(r'<section class="method" id="m-patchcore">(.*?)</section>', text, re.S).group(1)
    assert "anomaly map of" not in sec and "No heat maps: results.json records no good-image heat scale" in sec
    assert "anomaly map of good/001.png" in text  # the other method still has its maps
