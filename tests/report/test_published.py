"""Which published numbers the report puts beside a benchmark's own."""

from __future__ import annotations

from anomalyforge.report.published import PUBLISHED, dataset_key, published_for


def test_dataset_from_format_or_path():
    assert dataset_key("mvtec") == "mvtec_ad"
    assert dataset_key(None, "/data/mvtec_anomaly_detection/bottle") == "mvtec_ad"
    assert dataset_key("/x/mvtec_loco/juice_bottle") == "mvtec_loco"
    assert dataset_key("/somewhere/my_parts") is None


def test_bottle_rows_and_unknowns():
    key, rows = published_for("bottle", "/work/shared/datasets/mvtec_ad/bottle")
    assert key == "mvtec_ad/bottle"
    by = {r["method"]: r for r in rows}
    assert (by["GAA"]["pixel_auroc"], by["GAA"]["pixel_ap"], by["GAA"]["accuracy"]) == (99.7, 96.2, 95.4)
    assert "accuracy" not in by["Crop&Paste"]  # not published: the report shows a dash
    rows[0]["pixel_auroc"] = 0.0  # callers get copies; the table itself stays intact
    assert PUBLISHED["mvtec_ad/bottle"][0]["pixel_auroc"] == 96.7
    assert published_for("bottle", "/data/my_parts/bottle") == (None, [])
    assert published_for("juice_bottle", "mvtec_loco") == ("mvtec_loco/juice_bottle", [])
