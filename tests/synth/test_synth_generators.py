"""Every model-free generator on real data: exact masks, determinism, fit/load equivalence."""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest

from anomalyforge.atomic import write_png_atomic
from anomalyforge.data import few_shot_split, fit_data, load_dataset
from anomalyforge.data.fitdata import FitData
from anomalyforge.data.io import read_image
from anomalyforge.data.types import Sample
from anomalyforge.errors import ConfigError, DataError
from anomalyforge.masks.foreground import foreground_mask
from anomalyforge.synth.base import get_generator

SIZE = 96
METHODS = ["croppaste", "cutpaste", "cutpaste-scar", "perlin", "nsa"]


def _fit_data(path, size=SIZE, n_good=10):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        split = few_shot_split(load_dataset(path), progress=False)
    fd = fit_data(split, size=size)
    fd.good = fd.good[:n_good]
    return fd


@pytest.fixture(scope="module")
def bottle_fd(small_bottle):
    return _fit_data(small_bottle)


@pytest.mark.parametrize("method", METHODS)
def test_pairs_mark_exactly_the_changed_region(method, bottle_fd, tmp_path):
    cls = get_generator(method)
    gen = cls(cls.make_config())
    gen.fit(bottle_fd, tmp_path)
    pairs = gen.generate("broken_small", [11, 12, 13])
    assert len(pairs) == 3
    for p in pairs:
        assert p.image.shape == (SIZE, SIZE, 3) and p.image.dtype == np.uint8
        assert p.mask.shape == (SIZE, SIZE) and set(np.unique(p.mask)) == {0, 255}
        src = read_image(p.source, SIZE)
        diff = np.abs(p.image.astype(int) - src.astype(int)).max(axis=2)
        m = p.mask > 0
        assert not diff[~m].any()  # nothing changed outside the mask
        assert (diff[m] > gen.config.diff_threshold).mean() >= gen.config.min_changed  # mask = change
        fg = foreground_mask(src) > 0
        assert (m & fg).sum() >= 0.8 * m.sum()  # on the bottle, not the background
        assert "redraws" in p.params
    # determinism and fit/load equivalence
    again = cls(cls.make_config())
    again.load(bottle_fd, tmp_path)
    for a, b in zip(pairs, again.generate("broken_small", [11, 12, 13]), strict=False):
        assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask) and a.source == b.source
    other = gen.generate("broken_small", [14])[0]
    assert not np.array_equal(other.image, pairs[0].image)


def test_mask_grows_only_over_pixels_changed_beyond_the_threshold(bottle_fd, tmp_path):
    """A draft's feathered rim joins the mask where it changed by more than `diff_threshold` (and
    within `grow` px); fainter changes are reverted to the good image, never masked."""
    from anomalyforge.synth.mf_base import Draft

    cls = get_generator("cutpaste")
    gen = cls(cls.make_config())
    gen.fit(bottle_fd, tmp_path)
    src = gen.data.image(gen.data.good[0])
    fg = cv2.erode(gen.fg[0], np.ones((25, 25), np.uint8)) > 0
    ys, xs = np.nonzero(fg)
    cy, cx = int(np.median(ys)), int(np.median(xs))
    prop = np.zeros(src.shape[:2], np.uint8)
    prop[cy - 4:cy + 4, cx - 4:cx + 4] = 255
    inner = cv2.dilate(prop, np.ones((3, 3), np.uint8)) > 0  # 1 px ring
    outer = (cv2.dilate(prop, np.ones((5, 5), np.uint8)) > 0) & ~inner  # the next 1 px ring
    t = gen.config.diff_threshold
    img = src.astype(int)
    img[prop > 0] = 255 - img[prop > 0]
    img[inner & (prop == 0)] += np.where(img[inner & (prop == 0)] > 127, -(t + 6), t + 6)  # clearly changed
    img[outer] += np.where(img[outer] > 127, -t, t)  # changed by exactly the threshold: not "changed"
    out, mask = gen._finalize(Draft(np.clip(img, 0, 255).astype(np.uint8), 0, prop, grow=3))
    assert np.array_equal(mask > 0, inner)  # proposal + the clearly changed ring, not the faint one
    assert np.array_equal(out[~inner], src[~inner])  # the faint ring is reverted


def test_croppaste_pastes_the_real_defect_shape(bottle_fd, tmp_path):
    cls = get_generator("croppaste")
    gen = cls(cls.make_config({"rotation": 0.0, "flip": False, "scale": [1.0, 1.0]}))
    gen.fit(bottle_fd, tmp_path)
    defect = bottle_fd.defects["broken_small"][0]
    area = (bottle_fd.mask(defect) > 0).sum()
    for p in gen.generate("broken_small", [1, 2]):
        assert p.params["defect"] == str(defect.image)
        # pure translation: the mask is the defect mask (plus at most the feathered rim)
        assert area <= (p.mask > 0).sum() <= area * 1.6 + 40


def test_croppaste_pastes_the_defects_own_pixels_transformed(bottle_fd, tmp_path):
    """Inside the pasted mask the pixels are the source defect's, warped by the recorded matrix
    (colour matching off: alpha is 1 there), not the defect at its old place or the good image."""
    cls = get_generator("croppaste")
    gen = cls(cls.make_config({"colour_match": False}))
    gen.fit(bottle_fd, tmp_path)
    checked = 0
    for p in gen.generate("broken_small", [1, 2, 3, 4]):
        mat = np.array(p.params["matrix"], np.float64)
        assert not p.params["kept_position"] and np.abs(mat[:, 2]).max() > 2  # it really moved
        d_img = read_image(p.params["defect"], SIZE)
        expected = cv2.warpAffine(d_img, mat, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        inner = cv2.erode((p.mask > 0).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0  # off the feathered rim
        if inner.sum() < 5:
            continue
        got = p.image[inner].astype(int)
        err = np.abs(got - expected[inner].astype(int))
        assert np.median(err) <= 2 and err.mean() < 4  # the warped defect (matrix rounded to 4 places)
        unmoved = np.abs(got - d_img[inner].astype(int)).mean()
        good = np.abs(got - read_image(p.source, SIZE)[inner].astype(int)).mean()
        assert min(unmoved, good) > err.mean() + 5  # clearly not the defect left in place, nor the good image
        checked += 1
    assert checked >= 2


def test_croppaste_on_a_texture_and_mask_variation(mtile_dir, tmp_path):
    fd = _fit_data(mtile_dir, size=64, n_good=8)
    fd.defects = {"crack": fd.defects["crack"][:3]}
    cls = get_generator("croppaste")
    gen = cls(cls.make_config({"mask_variation": True}))
    gen.fit(fd, tmp_path)
    assert gen.texture
    plain = cls(cls.make_config({"mask_variation": False}))
    plain.fit(fd, tmp_path / "plain")
    for p, q in zip(gen.generate("crack", [5, 6]), plain.generate("crack", [5, 6]), strict=True):
        assert p.params["mask_variation"] is True and q.params["mask_variation"] is False
        src = read_image(p.source, 64)
        diff = np.abs(p.image.astype(int) - src.astype(int)).max(axis=2)
        m = p.mask > 0
        assert m.sum() >= 4 and not diff[~m].any()  # a real crack pasted: only the mask changed ...
        assert (diff[m] > gen.config.diff_threshold).mean() >= gen.config.min_changed  # ... and it did change
        assert not np.array_equal(p.mask, q.mask)  # the varied outline is not the plain paste


def test_perlin_texture_folder(bottle_fd, mtile_dir, tmp_path, monkeypatch):
    import anomalyforge.synth.perlin as perlin

    cls = get_generator("perlin")
    gen = cls(cls.make_config({"texture_dir": str(mtile_dir / "MT_Free" / "Imgs")}))
    gen.fit(bottle_fd, tmp_path)
    p = gen.generate("contamination", [3])[0]
    assert p.params["texture"].startswith(str(mtile_dir))
    # the pixels: with the colour augmentation switched off, inside the mask the pair is the
    # documented blend (1 - beta) * texture + beta * good image, of the texture it names
    monkeypatch.setattr(perlin, "draem_augment", lambda a, rng: (a, []))
    for p in gen.generate("contamination", [3, 4]):
        tex = read_image(p.params["texture"], SIZE).astype(float)
        good = read_image(p.source, SIZE).astype(float)
        beta, m = p.params["beta"], p.mask > 0
        blend = (1 - beta) * tex + beta * good
        assert np.abs(p.image[m] - blend[m]).max() <= 1.5  # rounding and beta's 4 recorded decimals
        assert np.abs(p.image[m] - good[m]).mean() > 5  # and it is not the good image
    with pytest.raises(DataError, match="texture folder not found"):
        cls(cls.make_config({"texture_dir": str(tmp_path / "nope")})).fit(bottle_fd, tmp_path / "s")


def test_config_errors_are_clear():
    cls = get_generator("croppaste")
    with pytest.raises(ConfigError, match="no parameter"):
        cls.make_config({"colour": 1})
    with pytest.raises(ConfigError, match="model-free"):
        cls.make_config({"fit_steps": 10})
    with pytest.raises(ConfigError, match="lower bound"):
        cls.make_config({"scale": [1.2, 0.8]})
    with pytest.raises(ConfigError, match=r"scale=0.9: expected a \[low, high\] pair"):
        cls.make_config({"scale": 0.9})
    with pytest.raises(ConfigError, match="flip='yes': expected true or false"):
        cls.make_config({"flip": "yes"})
    with pytest.raises(ConfigError, match="expected an integer"):
        cls.make_config({"candidates": "many"})
    with pytest.raises(ConfigError, match="pair of integers"):
        get_generator("perlin").make_config({"perlin_scale": [0.5, 3]})
    with pytest.raises(ConfigError, match="placement"):
        cls.make_config({"placement": "anywhere"})
    with pytest.raises(ConfigError, match="unknown method"):
        get_generator("no-such-method")


def test_defect_larger_than_the_good_images_is_rejected(bottle_fd, tmp_path):
    big = tmp_path / "big_mask.png"
    write_png_atomic(big, np.full((64, 64), 255, np.uint8))
    d = bottle_fd.defects["broken_large"][0]
    fd = FitData(bottle_fd.category, SIZE, {"huge": [Sample(d.image, big, "defect", "huge", "bottle",
                                                            "test", "x")]}, bottle_fd.good)
    cls = get_generator("croppaste")
    with pytest.raises(DataError, match="big_mask.png: defect covers 100% of the image"):
        cls(cls.make_config()).fit(fd, tmp_path / "state")


def test_user_region_masks_confine_the_defects(bottle_fd, tmp_path):
    regions = tmp_path / "regions"
    left = np.zeros((SIZE, SIZE), np.uint8)
    left[8:88, 8:48] = 255
    for s in bottle_fd.good:
        write_png_atomic(regions / f"{s.image.stem}.png", left)
    cls = get_generator("cutpaste")
    gen = cls(cls.make_config({"region_dir": str(regions), "area_ratio": [0.02, 0.05]}))
    gen.fit(bottle_fd, tmp_path / "state")
    for p in gen.generate("broken_large", [1, 2, 3]):
        m = p.mask > 0
        assert (m & (left > 0)).sum() >= 0.95 * m.sum()
    with pytest.raises(DataError, match="no region mask"):
        cls(cls.make_config({"region_dir": str(tmp_path)})).fit(bottle_fd, tmp_path / "s3")


def test_croppaste_placement_modes(bottle_fd, tmp_path):
    cls = get_generator("croppaste")
    same = cls(cls.make_config({"placement": "same"}))
    same.fit(bottle_fd, tmp_path / "same")
    for p in same.generate("broken_small", [1, 2]):
        own = bottle_fd.mask(bottle_fd.defects["broken_small"][0]) > 0
        assert p.params["kept_position"] and (p.mask > 0)[own].all()  # the defect did not move
    edge = cls(cls.make_config({"placement": "edge", "keep_position_above": 1.0}))
    edge.fit(bottle_fd, tmp_path / "edge")
    for p in edge.generate("broken_small", [3, 4]):
        fg = foreground_mask(read_image(p.source, SIZE)) > 0
        rim = fg & ~(cv2.erode(fg.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0)
        assert not p.params["kept_position"] and ((p.mask > 0) & rim).any()  # touches the outline
