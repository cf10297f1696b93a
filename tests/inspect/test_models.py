import numpy as np
import pytest
import torch

from anomalyforge.errors import ConfigError
from anomalyforge.inspect.augment import flip_rotate
from anomalyforge.inspect.losses import dice_loss, focal_loss, seg_loss
from anomalyforge.inspect.models import build_localizer
from anomalyforge.inspect.pairs import GeneratedPairs
from anomalyforge.inspect.profiles import get_profile
from anomalyforge.inspect.train import train_localizer


@pytest.mark.parametrize("name", ["feature_head", "lite_unet", "draem_unet"])
def test_models_map_images_to_same_size_logits(name):
    m = build_localizer(name, width=16, weights=None).eval()
    with torch.no_grad():
        out = m(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, 1, 64, 64) and torch.isfinite(out).all()


def test_unknown_model_is_config_error():
    with pytest.raises(ConfigError, match="unknown localisation model"):
        build_localizer("segformer")


def test_augmentation_keeps_image_and_mask_aligned():
    g = torch.Generator().manual_seed(3)
    img = torch.zeros(8, 3, 16, 16)
    img[:, :, 2:5, 9:14] = 1.0
    mask = img[:, :1].clone()
    a, m = flip_rotate(img, mask, g)
    assert torch.equal(a[:, :1], m)
    assert not torch.equal(a, img)  # something changed for 8 random draws
    a2, _ = flip_rotate(img, mask, torch.Generator().manual_seed(3))
    assert torch.equal(a, a2)


def test_losses_prefer_correct_predictions():
    t = torch.zeros(1, 1, 8, 8)
    t[..., 2:4, 2:4] = 1
    good, bad = (t * 2 - 1) * 6, (1 - 2 * t) * 6
    for fn in (focal_loss, dice_loss):
        assert fn(good, t) < fn(bad, t)
    with pytest.raises(ConfigError, match="unknown loss"):
        seg_loss("hinge", good, t)


def _heldout(fit, n=6, seed=99):
    from inspectdata import croppaste

    return croppaste(fit, n, seed)


def test_feature_head_learns_pasted_defects_and_is_deterministic(bottle_fit64, bottle_pairs64):
    prof = get_profile("smoke", steps=40, lr=3e-3)
    a = train_localizer(bottle_fit64, bottle_pairs64, prof, seed=0, progress=False)
    val = _heldout(bottle_fit64)  # new pairs (other seed), never seen in training
    p = a.predict(val.images)
    assert p.shape == val.masks.shape and p.min() >= 0 and p.max() <= 1
    inside, outside = p[val.masks > 0].mean(), p[val.masks == 0].mean()
    assert inside > outside + 0.1, (inside, outside)
    b = train_localizer(bottle_fit64, bottle_pairs64, prof, seed=0, progress=False)
    np.testing.assert_array_equal(p, b.predict(val.images))
    c = train_localizer(bottle_fit64, bottle_pairs64, prof, seed=1, progress=False)
    assert not np.array_equal(p, c.predict(val.images))
    # test-time flip averaging = mean of the maps of the flipped images, flipped back
    a.tta = True
    x = val.images[:3]
    want = np.mean([p[:3], a_plain(a, x[:, :, ::-1])[:, :, ::-1], a_plain(a, x[:, ::-1])[:, ::-1],
                    a_plain(a, x[:, ::-1, ::-1])[:, ::-1, ::-1]], axis=0)
    np.testing.assert_allclose(a.predict(x), want, atol=1e-5)


def a_plain(loc, images):
    loc.tta = False
    try:
        return loc.predict(np.ascontiguousarray(images))
    finally:
        loc.tta = True


@pytest.mark.parametrize("name", ["lite_unet", "draem_unet"])
def test_trainable_unets_run_a_seeded_schedule(bottle_fit64, bottle_pairs64, name):
    prof = get_profile("smoke", localizer=name, steps=2, batch_size=2)
    a = train_localizer(bottle_fit64, bottle_pairs64, prof, seed=0, progress=False, weights=None)
    b = train_localizer(bottle_fit64, bottle_pairs64, prof, seed=0, progress=False, weights=None)
    x = bottle_pairs64.images[:2]
    np.testing.assert_allclose(a.predict(x), b.predict(x), rtol=0, atol=1e-6)


def test_generated_pairs_validate_lengths_and_coverage(bottle_pairs64):
    from anomalyforge.errors import DataError

    with pytest.raises(ConfigError, match="differ in length"):
        GeneratedPairs(bottle_pairs64.images, bottle_pairs64.masks[:-1], bottle_pairs64.types)
    with pytest.raises(DataError, match="no pairs for defect type.*scratch"):
        bottle_pairs64.check_covers(["scratch"], "run")
