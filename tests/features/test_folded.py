"""Folded (BatchNorm-in-conv, channels-last) EfficientNet-Lite inference against the library's own
forward, on random-weight backbones whose BatchNorm statistics are randomised (with the default
mean 0 / variance 1 a fold would be nearly the identity and prove nothing)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from anomalyforge.features import folded
from anomalyforge.features.backbone import BackboneSpec, FeatureExtractor, frozen_extractor, load_lite_net
from anomalyforge.inspect.classify import build_classifier


def _randomise_bn(module: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            assert m.running_mean is not None and m.running_var is not None
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.1)
            m.weight.data.copy_(torch.randn(n, generator=g) * 0.5 + 1)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.2)


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape and a.is_contiguous()
    scale = float(b.abs().max())
    assert scale > 0
    assert float((a - b).abs().max()) <= 1e-4 * scale


@pytest.mark.parametrize("arch", ["efficientnet-lite0", "efficientnet-lite1"])
def test_folded_features_equal_the_library_forward(arch: str) -> None:
    fx = frozen_extractor(BackboneSpec(arch, None, (1, 2, 3)))
    _randomise_bn(fx)
    x = torch.rand(2, 3, 96, 128, generator=torch.Generator().manual_seed(1))
    calls = []
    real = folded._conv_bn

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    with torch.enable_grad():  # a gradient asked for: the library's own path
        plain = [f.detach() for f in fx(x)]
    assert not calls
    folded._conv_bn, saved = counting, folded._conv_bn
    try:
        with torch.no_grad():
            fast = fx(x)
    finally:
        folded._conv_bn = saved
    assert calls  # the folded path ran
    assert len(fast) == len(plain) == 3
    for a, b in zip(fast, plain, strict=True):
        _close(a, b)


def test_folding_is_off_in_training_mode_and_under_export() -> None:
    fx = FeatureExtractor(BackboneSpec(weights=None, levels=(2,)))
    with torch.no_grad():
        fx.train()
        assert not folded.use_folded(fx.net)
        fx.eval()
        assert folded.use_folded(fx.net)
    assert not folded.use_folded(fx.net)  # gradients on


def test_folded_classifier_trunk_and_top_equal_the_library_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    net = build_classifier("efficientnet-lite0", 3, None, finetune_from=4)
    _randomise_bn(net, 2)
    net.eval()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    calls = []
    real = folded._conv_bn
    with torch.no_grad():
        with monkeypatch.context() as m:
            m.setattr(folded, "_conv_bn", lambda *a: calls.append(1) or real(*a))
            fast = net(x)
        n_folded = len(calls)
        with monkeypatch.context() as m:  # the library's forward everywhere
            m.setattr("anomalyforge.inspect.classify.use_folded", lambda module: False)
            m.setattr("anomalyforge.features.backbone.use_folded", lambda module: False)
            m.setattr(folded, "_conv_bn", lambda *a: calls.append(1) or real(*a))
            plain = net(x)
    assert n_folded > 0 and len(calls) == n_folded  # trunk and top folded; then none
    _close(fast, plain)


def test_folded_imagenet_classifier_equals_the_library_forward() -> None:
    net = load_lite_net("lite0", None).eval()
    _randomise_bn(net, 4)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        _close(folded.lite_logits(net, x), net(x))
