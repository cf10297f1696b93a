"""Image/mask reading: every bit depth and channel layout, LOCO mask folders, label maps, corrupt files."""

from __future__ import annotations

import numpy as np
import pytest
from datalayouts import write_image, write_mask
from PIL import Image

from anomalyforge.data.io import image_size, read_image, read_mask, verify_image
from anomalyforge.errors import DataError


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "I;16", "P"])
def test_images_of_every_mode_load_as_rgb(tmp_path, mode):
    p = write_image(tmp_path / f"x_{mode.replace(';', '')}.png", (20, 10), mode)
    arr = read_image(p)
    assert arr.shape == (10, 20, 3) and arr.dtype == np.uint8
    assert read_image(p, 8).shape == (8, 8, 3)
    assert image_size(p) == (20, 10)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "I;16"])
def test_masks_of_every_mode_binarise(tmp_path, mode):
    arr = np.zeros((10, 20), np.uint8)
    arr[2:5, 3:9] = 255
    if mode == "I;16":
        img = Image.fromarray(arr.astype(np.uint16) * 257)
    elif mode == "L":
        img = Image.fromarray(arr, "L")
    else:
        img = Image.fromarray(np.stack([arr] * len(mode), axis=2), mode)
    p = tmp_path / "m.png"
    img.save(p)
    m = read_mask(p)
    assert m.dtype == np.uint8 and set(np.unique(m)) == {0, 255}
    assert (m > 0).sum() == 18


def test_soft_mask_threshold(tmp_path):
    arr = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (4, 1))  # 25 grey levels
    p = tmp_path / "soft.png"
    Image.fromarray(arr, "L").save(p)
    assert (read_mask(p, threshold=128) > 0).sum() == 4 * 12  # 130..240
    assert (read_mask(p, threshold=200) > 0).sum() == 4 * 5
    assert (read_mask(p, threshold=130) > 0).sum() == 4 * 12  # a pixel exactly at the threshold is defect


def test_label_map_mask_counts_every_labelled_pixel(tmp_path):
    arr = np.zeros((10, 10), np.uint8)
    arr[1:3, 1:3] = 1
    arr[6:8, 6:9] = 2
    p = tmp_path / "label.png"
    Image.fromarray(arr, "L").save(p)
    assert (read_mask(p) > 0).sum() == 4 + 6


def test_mask_folder_is_or_of_its_region_masks(tmp_path):
    folder = tmp_path / "007"
    write_mask(folder / "000.png", (20, 10), (0, 0, 4, 4))
    write_mask(folder / "001.png", (20, 10), (10, 5, 14, 9), value=254)  # LOCO uses 255, 254, ...
    m = read_mask(folder)
    assert (m > 0).sum() == 16 + 16
    assert image_size(folder) == (20, 10)
    assert read_mask(folder, 5).shape == (5, 5)


def test_mask_folder_with_mismatched_parts_names_the_part(tmp_path):
    folder = tmp_path / "003"
    write_mask(folder / "000.png", (20, 10))
    bad = write_mask(folder / "001.png", (21, 10))
    with pytest.raises(DataError, match="001.png"):
        read_mask(folder)
    with pytest.raises(DataError) as exc:
        image_size(folder)
    assert exc.value.path == bad


def test_empty_mask_folder_is_an_error(tmp_path):
    (tmp_path / "004").mkdir()
    with pytest.raises(DataError, match="no mask images"):
        read_mask(tmp_path / "004")


def test_truncated_png_is_found_by_full_decode(tmp_path):
    p = write_image(tmp_path / "t.png", (64, 64))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    assert image_size(p) == (64, 64)  # the header survives ...
    with pytest.raises(DataError, match="t.png"):  # ... but decoding does not
        verify_image(p)
    with pytest.raises(DataError, match="cannot read image"):
        read_image(p)


def test_garbage_file_fails_on_header_read(tmp_path):
    p = tmp_path / "g.png"
    p.write_bytes(b"not an image at all")
    with pytest.raises(DataError, match="g.png"):
        image_size(p)
