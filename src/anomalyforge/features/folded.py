"""Frozen EfficientNet-Lite inference with every BatchNorm folded into its convolution, channels-last.

Why not the library's forward: `efficientnet_lite_pytorch` runs each convolution, then BatchNorm,
then ReLU6 as separate passes over memory, and pads "same" explicitly before every convolution.
On a CPU those memory passes cost as much as the convolutions. In eval mode BatchNorm is an
affine map with fixed statistics, so it folds exactly into the convolution's weight and bias
(the same arithmetic, rounded differently); symmetric padding moves into the convolution; and
oneDNN's convolutions run faster on channels-last tensors. The folded weights are computed from
the modules' current parameters at every call (a few milliseconds), so no copy can go stale
when weights are loaded or trained.

`run_lite(modules, x)` runs a stem / MBConv block sequence this way; callers use it only where
no gradient is needed and the modules are in eval mode (`use_folded`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def use_folded(module: nn.Module) -> bool:
    """Whether `module` may run folded now: eval mode, no gradient wanted, not being exported or traced."""
    return (not module.training and not torch.is_grad_enabled() and not torch.jit.is_tracing()
            and not torch.onnx.is_in_onnx_export())


def _conv_bn(x: torch.Tensor, conv: Any, bn: Any) -> torch.Tensor:
    """conv then eval-mode bn, as one convolution (padding of the library's static-"same" conv kept)."""
    assert bn.running_var is not None and bn.running_mean is not None
    scale = (bn.weight if bn.weight is not None else 1.0) / torch.sqrt(bn.running_var + bn.eps)
    weight = conv.weight * scale.reshape(-1, 1, 1, 1)
    bias = (bn.bias if bn.bias is not None else 0.0) - bn.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    padding = conv.padding
    pad = getattr(conv, "static_padding", None)
    if isinstance(pad, nn.ZeroPad2d):
        left, right, top, bottom = pad.padding
        if left == right and top == bottom:  # symmetric: the convolution pads itself
            padding = (top, left)
        else:
            x = pad(x)
    return F.conv2d(x, weight, bias, conv.stride, padding, conv.dilation, conv.groups)


def _activate(x: torch.Tensor, act: Any) -> torch.Tensor:
    if isinstance(act, nn.ReLU6):
        return F.hardtanh_(x, 0.0, 6.0)
    return act(x)


def _block(b: Any, inputs: torch.Tensor) -> torch.Tensor:
    """An MBConvBlock (no squeeze-excitation, as in every Lite variant) folded."""
    args = b._block_args
    x = inputs
    if args.expand_ratio != 1:
        x = _activate(_conv_bn(x, b._expand_conv, b._bn0), b._swish)
    x = _activate(_conv_bn(x, b._depthwise_conv, b._bn1), b._swish)
    x = _conv_bn(x, b._project_conv, b._bn2)
    if args.id_skip and args.stride == 1 and args.input_filters == args.output_filters:
        x = x + inputs
    return x


def _foldable(m: nn.Module) -> bool:
    if isinstance(m, nn.Sequential):  # the stem (or the classifier's head conv): conv, bn, activation
        return len(m) == 3 and isinstance(m[0], nn.Conv2d) and isinstance(m[1], nn.BatchNorm2d)
    return hasattr(m, "_block_args") and not getattr(m, "has_se", False)


def run_lite(modules: Iterable[nn.Module], x: torch.Tensor, keep: Iterable[int] = ()) -> list[torch.Tensor]:
    """Run `modules` (an EfficientNet-Lite stem and / or MBConv blocks) in sequence on `x`, folded and
    channels-last where the module allows (any other module runs as it is); returns the outputs of
    the modules at indices `keep` and, last, the final output, each in the standard memory format."""
    keep = set(keep)
    h = x.contiguous(memory_format=torch.channels_last)
    outs = []
    for i, m in enumerate(modules):
        if not _foldable(m):
            h = m(h)
        elif isinstance(m, nn.Sequential):
            h = _activate(_conv_bn(h, m[0], m[1]), m[2])
        else:
            h = _block(m, h)
        if i in keep:
            outs.append(h.contiguous())
    outs.append(h.contiguous())
    return outs


def lite_logits(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The ImageNet logits of a whole EfficientNet-Lite classifier (`efficientnet_lite_pytorch`'s
    EfficientNet, eval mode, global average pooling) on ImageNet-normalised `x`, folded."""
    lib: Any = net  # the library's attributes are untyped
    stem = nn.Sequential(lib._conv_stem, lib._bn0, lib._swish)
    head = nn.Sequential(lib._conv_head, lib._bn1, lib._swish)  # conv, bn, activation: folds like the stem
    h = run_lite([stem, *lib._blocks, head], x)[-1]
    out: torch.Tensor = lib._fc(h.mean((2, 3)))
    return out


__all__ = ["lite_logits", "run_lite", "use_folded"]
