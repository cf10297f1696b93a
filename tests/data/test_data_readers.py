"""Every layout reader on small synthetic layouts written into tmp_path."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from datalayouts import H, W, make_mvtec, write_image, write_mask

from anomalyforge.data import detect_format, few_shot_split, load_dataset, load_datasets
from anomalyforge.data.io import read_mask
from anomalyforge.errors import ConfigError, DataError


def _by(ds, **kw):
    return ds.select(**kw)


def test_mvtec_ad(mvtec_cat: Path):
    ds = load_dataset(mvtec_cat)
    assert (ds.format, ds.category, ds.root) == ("mvtec", "widget", mvtec_cat)
    assert len(_by(ds, label="good", split="train")) == 4
    assert len(_by(ds, label="good", split="test")) == 2
    assert ds.defect_types == ["dent", "scratch"]
    s = _by(ds, defect_type="scratch")[0]
    assert s.mask == mvtec_cat / "ground_truth" / "scratch" / "000_mask.png" and s.id == "000"
    assert all(g.mask is None for g in _by(ds, label="good"))


def test_mvtec_root_with_several_categories(tmp_path: Path):
    make_mvtec(tmp_path / "root" / "alpha")
    make_mvtec(tmp_path / "root" / "beta", {"hole": 2})
    with pytest.raises(ConfigError, match="alpha, beta"):
        load_dataset(tmp_path / "root")
    assert load_dataset(tmp_path / "root", category="beta").defect_types == ["hole"]
    with pytest.raises(ConfigError, match="unknown category 'gamma'.*available: alpha, beta"):
        load_dataset(tmp_path / "root", category="gamma")
    assert [d.category for d in load_datasets(tmp_path / "root")] == ["alpha", "beta"]


def _make_loco(root: Path, folder_masks: bool) -> Path:
    for i in range(3):
        write_image(root / "train" / "good" / f"{i:03d}.png", seed=i)
    for i in range(2):
        write_image(root / "validation" / "good" / f"{i:03d}.png", seed=10 + i)
    for t in ("logical_anomalies", "structural_anomalies"):
        for i in range(3):
            write_image(root / "test" / t / f"{i:03d}.png", seed=20 + i)
            if folder_masks:  # original LOCO: one folder of region masks per image
                write_mask(root / "ground_truth" / t / f"{i:03d}" / "000.png", box=(0, 0, 4, 4))
                write_mask(root / "ground_truth" / t / f"{i:03d}" / "001.png", box=(20, 20, 24, 24), value=254)
            else:
                write_mask(root / "ground_truth" / t / f"{i:03d}.png")
    return root


@pytest.mark.parametrize("folder_masks", [True, False])
def test_mvtec_loco(tmp_path: Path, folder_masks: bool):
    root = _make_loco(tmp_path / "pushpins", folder_masks)
    ds = load_dataset(root)
    assert ds.format == "mvtec_loco"
    assert len(_by(ds, split="validation", label="good")) == 2
    assert ds.defect_types == ["logical_anomalies", "structural_anomalies"]
    s = _by(ds, defect_type="logical_anomalies")[1]
    assert s.mask.is_dir() == folder_masks
    assert (read_mask(s.mask) > 0).sum() == (32 if folder_masks else 70)
    split = few_shot_split(ds)
    assert [len(split.train_defects[t]) for t in split.defect_types] == [1, 1]
    assert split.test_good == _by(ds, split="validation")


def test_mvtec_loco_folder_mask_size_mismatch_is_an_error(tmp_path: Path):
    root = _make_loco(tmp_path / "pushpins", True)
    write_mask(root / "ground_truth" / "logical_anomalies" / "002" / "001.png", (W + 2, H))
    with pytest.raises(DataError, match="002"):
        load_dataset(root)


def test_mvtec3d_rgb(tmp_path: Path):
    root = tmp_path / "cookie"
    for i in range(3):
        write_image(root / "train" / "good" / "rgb" / f"{i:03d}.png", seed=i)
        write_mask(root / "train" / "good" / "gt" / f"{i:03d}.png", box=None)
        (root / "train" / "good" / "xyz").mkdir(parents=True, exist_ok=True)
    write_image(root / "validation" / "good" / "rgb" / "000.png")
    write_image(root / "test" / "good" / "rgb" / "000.png")
    for i in range(4):
        write_image(root / "test" / "crack" / "rgb" / f"{i:03d}.png", seed=30 + i)
        write_mask(root / "test" / "crack" / "gt" / f"{i:03d}.png")
    ds = load_dataset(root)
    assert ds.format == "mvtec3d"
    assert [len(_by(ds, label="good", split=s)) for s in ("train", "validation", "test")] == [3, 1, 1]
    crack = _by(ds, defect_type="crack")
    assert len(crack) == 4 and crack[0].mask == root / "test" / "crack" / "gt" / "000.png"
    assert len(few_shot_split(ds).train_defects["crack"]) == 2


def _make_visa(root: Path) -> Path:
    rows = [("object", "split", "label", "image", "mask")]
    for i in range(4):
        rel = f"candle/Data/Images/Normal/{i:04d}.JPG"
        write_image(root / rel, seed=i)
        rows.append(("candle", "train" if i < 3 else "test", "normal", rel, ""))
    for i in range(3):
        rel = f"candle/Data/Images/Anomaly/{i:03d}.JPG"
        mrel = f"candle/Data/Masks/Anomaly/{i:03d}.png"
        write_image(root / rel, seed=50 + i)
        write_mask(root / mrel, value=1 + i % 2)  # VisA masks are label maps (1, 2, ...)
        rows.append(("candle", "test", "anomaly", rel, mrel))
    write_image(root / "capsules/Data/Images/Normal/0000.JPG")
    write_image(root / "capsules/Data/Images/Anomaly/000.JPG")
    write_mask(root / "capsules/Data/Masks/Anomaly/000.png")
    rows += [("capsules", "train", "normal", "capsules/Data/Images/Normal/0000.JPG", ""),
             ("capsules", "test", "anomaly", "capsules/Data/Images/Anomaly/000.JPG",
              "capsules/Data/Masks/Anomaly/000.png")]
    (root / "split_csv").mkdir(parents=True)
    with open(root / "split_csv" / "1cls.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return root


def test_visa_split_csv(tmp_path: Path):
    root = _make_visa(tmp_path / "VisA")
    assert [d.category for d in load_datasets(root)] == ["candle", "capsules"]
    for path, cat in ((root, "candle"), (root / "candle", None)):
        ds = load_dataset(path, category=cat)
        assert (ds.format, ds.category) == ("visa", "candle")
        assert len(_by(ds, label="good", split="train")) == 3
        assert len(_by(ds, label="good", split="test")) == 1
        assert ds.defect_types == ["anomaly"] and len(_by(ds, label="defect")) == 3
    split = few_shot_split(ds)  # label-map masks are non-empty, so they can be training examples
    assert len(split.train_defects["anomaly"]) == 1 and not split.warnings


def test_visa_without_split_csv_reads_folders(tmp_path: Path):
    root = _make_visa(tmp_path / "VisA")
    (root / "split_csv" / "1cls.csv").unlink()
    ds = load_dataset(root / "candle")
    assert ds.format == "visa" and len(_by(ds, label="good")) == 4 and len(_by(ds, label="defect")) == 3
    assert any("split" in w for w in ds.warnings)


def test_visa_bad_csv_names_the_file(tmp_path: Path):
    root = _make_visa(tmp_path / "VisA")
    (root / "split_csv" / "1cls.csv").write_text("object,image\ncandle,x.JPG\n")
    with pytest.raises(DataError, match="1cls.csv.*lacks column"):
        load_dataset(root, category="candle")


def test_btad_with_different_mask_extension(tmp_path: Path):
    root = tmp_path / "BTech" / "01"
    for i in range(3):
        write_image(root / "train" / "ok" / f"{i:04d}.bmp", seed=i)
    write_image(root / "test" / "ok" / "0000.bmp")
    for i in range(4):
        write_image(root / "test" / "ko" / f"{i:04d}.bmp", seed=10 + i)
        write_mask(root / "ground_truth" / "ko" / f"{i:04d}.png")
    ds = load_dataset(tmp_path / "BTech")
    assert (ds.format, ds.category) == ("btad", "01")
    assert ds.defect_types == ["ko"]
    assert all(s.mask.suffix == ".png" for s in _by(ds, label="defect"))
    assert len(_by(ds, label="good", split="test")) == 1


def test_magnetic_tile_layout(tmp_path: Path):
    root = tmp_path / "Magnetic-tile-defect-datasets."
    for i in (5, 40, 300):
        write_image(root / "MT_Free" / "Imgs" / f"exp1_num_{i}.jpg", mode="L", seed=i)
        write_mask(root / "MT_Free" / "Imgs" / f"exp1_num_{i}.png", box=None)
    for i in (10181, 106151, 2610, 999):
        write_image(root / "MT_Blowhole" / "Imgs" / f"exp1_num_{i}.jpg", mode="L", seed=i)
        write_mask(root / "MT_Blowhole" / "Imgs" / f"exp1_num_{i}.png", value=200)
    write_image(root / "MT_Uneven" / "Imgs" / "exp2_num_1.jpg", mode="L")
    write_mask(root / "MT_Uneven" / "Imgs" / "exp2_num_1.png", box=None)
    ds = load_dataset(root)
    assert (ds.format, ds.category) == ("magnetic_tile", "magnetic_tile")
    assert ds.defect_types == ["blowhole", "uneven"]
    with pytest.warns(UserWarning, match="exp2_num_1.jpg has an empty mask"):
        split = few_shot_split(ds)
    assert [s.id for s in split.train_defects["blowhole"]] == ["exp1_num_999", "exp1_num_2610"]
    assert "uneven" not in split.train_defects and len(split.test_defects["uneven"]) == 1
    assert len(split.test_good) == 1 and len(split.train_good) == 2


@pytest.mark.parametrize("tree,suffix", [("masks", ""), ("ground_truth", "_mask"), ("masks", "_mask")])
def test_generic_folder(tmp_path: Path, tree: str, suffix: str):
    root = tmp_path / "parts"
    for i in range(5):
        write_image(root / "good" / f"g{i}.png", seed=i)
    for t in ("defect", "chip"):
        for i in range(3):
            write_image(root / t / f"img{i}.jpg", seed=10 + i)
            if t == "defect":  # flat mask tree
                write_mask(root / tree / f"img{i}{suffix}.png")
            else:  # per-type mask tree
                write_mask(root / tree / t / f"img{i}{suffix}.png", box=(1, 1, 3, 3))
    ds = load_dataset(root)
    assert ds.format == "folder" and ds.defect_types == ["chip", "defect"]
    chip = _by(ds, defect_type="chip")
    assert all(s.mask is not None and s.mask.parent.name == "chip" for s in chip)
    assert (read_mask(chip[0].mask) > 0).sum() == 4
    split = few_shot_split(ds)
    assert len(split.test_good) == 1 and len(split.train_good) == 4


def test_generic_folder_defect_without_mask_warns(tmp_path: Path):
    root = tmp_path / "parts"
    write_image(root / "good" / "a.png")
    write_image(root / "defect" / "b.png")
    ds = load_dataset(root)
    assert any("without mask" in w and "b.png" in w for w in ds.warnings)
    with pytest.warns(UserWarning, match="has no mask"):
        split = few_shot_split(ds)
    assert split.train_defects == {} and len(split.test_defects["defect"]) == 1


def test_forced_format(tmp_path: Path, mvtec_cat: Path):
    assert load_dataset(mvtec_cat, data_format="mvtec_ad").format == "mvtec"
    with pytest.raises(DataError, match="not a btad dataset"):
        load_dataset(mvtec_cat, data_format="btad")
    with pytest.raises(ConfigError, match="unknown data format 'nope'; known: mvtec3d"):
        load_dataset(mvtec_cat, data_format="nope")


def test_detection_is_by_folder_names(mvtec_cat: Path, tmp_path: Path):
    assert detect_format(mvtec_cat).name == "mvtec"
    assert detect_format(tmp_path) is None


def test_mask_threshold_is_applied(tmp_path: Path):
    root = make_mvtec(tmp_path / "w", {"faint": 3}, n_good=2)
    for i in range(3):
        write_mask(root / "ground_truth" / "faint" / f"{i:03d}_mask.png", value=100)  # soft, below 128
    with pytest.warns(UserWarning):
        assert few_shot_split(load_dataset(root)).train_defects == {}
    split = few_shot_split(load_dataset(root, mask_threshold=50))
    assert len(split.train_defects["faint"]) == 1
    with pytest.raises(ConfigError, match="threshold"):
        load_dataset(root, mask_threshold=0)


@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16", "P"])
def test_non_rgb_images_load_in_a_dataset(tmp_path: Path, mode: str):
    root = make_mvtec(tmp_path / "w", {"x": 2}, n_good=2)
    write_image(root / "test" / "x" / "000.png", mode=mode)
    ds = load_dataset(root)
    from anomalyforge.data import fit_data
    data = fit_data(few_shot_split(ds), size=16)
    img = data.image(data.defects["x"][0])
    assert img.shape == (16, 16, 3) and img.dtype == np.uint8
