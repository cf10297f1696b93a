"""The map-region defect-type classifier (`inspect.region_classify`) on real bottle defects."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from anomalyforge.errors import ConfigError
from anomalyforge.inspect.region_classify import C, fit_region_classifier, logistic_head, region_weights


def test_region_weights_mark_what_lies_above_the_top_tenth_of_the_map():
    m = torch.zeros(1, 20, 20)
    m[0, 10:, 10:] = torch.linspace(0.0, 0.5, 100).view(10, 10)  # low background
    m[0, :3, :10] = 1.0  # 30 pixels: with the blob, the top tenth (40 of 400) ends on this plateau
    m[0, 5:7, :5] = 3.0  # the 10-pixel blob
    w = region_weights(m)
    assert w.shape == (1, 1, 20, 20)
    assert torch.count_nonzero(w) == 10
    assert torch.allclose(w[0, 0, 5:7, :5], torch.full((2, 5), 2.0))  # how far above the 90th percentile


@pytest.mark.parametrize("n_classes", [2, 3])
def test_folded_head_predicts_what_the_sklearn_pipeline_predicts(n_classes):
    """The standardisation folded into one linear layer gives scikit-learn's own decisions, and a
    label never seen in training gets no vote."""
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 2, (n_classes, 12))
    y = [f"t{k}" for k in rng.integers(0, n_classes, 90)]
    x = np.stack([centres[int(t[1])] for t in y]) + rng.normal(0, 1.5, (90, 12)) * rng.uniform(0.1, 5, 12)
    labels = ["never"] + sorted(set(y))
    w, b = logistic_head(x, y, labels)
    ref = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000, class_weight="balanced")).fit(x, y)
    test = x + rng.normal(0, 1.0, x.shape)
    ours = [labels[k] for k in (test @ w.T + b).argmax(1)]
    assert ours == list(ref.predict(test))
    assert "never" not in ours


def test_one_type_is_refused():
    with pytest.raises(ConfigError, match="two types"):
        logistic_head(np.zeros((4, 3)), ["a"] * 4, ["a", "b"])


def test_region_classifier_types_real_held_out_defects_from_their_regions(bottle_split):
    """Fitted on bottle's few-shot training defects through their masks, it types the held-out
    test defects (through theirs) well above the majority rate; with maps that mark the wrong place
    (the image's corner) it does worse: it reads the region, not just the whole image."""
    from anomalyforge.data.io import read_image, read_mask

    size = 128

    def load(split_defects):
        items = [(s, t) for t, v in sorted(split_defects.items()) for s in v]
        imgs = np.stack([read_image(s.image, size) for s, _ in items])
        masks = np.stack([(read_mask(s.mask, size) > 0).astype(np.float32) for s, _ in items])
        return imgs, masks, [t for _, t in items]

    xi, xm, xt = load(bottle_split.train_defects)
    ti, tm, tt = load(bottle_split.test_defects)
    labels = sorted(set(xt))
    clf = fit_region_classifier(xi, xm, xt, labels, "imagenet", "efficientnet-lite0", "cpu")
    assert clf.labels == labels and clf.size == size
    acc = np.mean(np.array(clf.predict(ti, tm)) == np.array(tt))
    majority = max(tt.count(t) for t in labels) / len(tt)
    corner = np.zeros_like(tm)
    corner[:, :16, :16] = 1.0
    acc_corner = np.mean(np.array(clf.predict(ti, corner)) == np.array(tt))
    print(f"bottle region classifier: {acc:.3f} on test defects (majority {majority:.3f}, "
          f"wrong region {acc_corner:.3f})")
    assert acc >= majority + 0.25
    assert acc > acc_corner
    probs = clf.predict_proba(ti[:3], tm[:3])
    assert probs.shape == (3, len(labels)) and np.allclose(probs.sum(1), 1.0, atol=1e-5)
    with pytest.raises(ConfigError, match="needs the localiser's maps"):
        clf.predict(ti[:2])
