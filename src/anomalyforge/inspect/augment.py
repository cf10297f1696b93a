"""Seeded geometric augmentation applied identically to an image batch and its masks."""

from __future__ import annotations

from typing import cast, overload

import torch


@overload
def flip_rotate(images: torch.Tensor, masks: torch.Tensor, gen: torch.Generator,
                rotate: bool = True) -> tuple[torch.Tensor, torch.Tensor]: ...
@overload
def flip_rotate(images: torch.Tensor, masks: None, gen: torch.Generator,
                rotate: bool = True) -> tuple[torch.Tensor, None]: ...
def flip_rotate(images: torch.Tensor, masks: torch.Tensor | None, gen: torch.Generator,
                rotate: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Random horizontal/vertical flip and 90-degree rotation per sample, drawn from `gen`.

    Images (B, C, H, W) and masks (B, 1, H, W) get the same transform, so masks stay aligned.
    Only lossless transforms are used, so no interpolation blurs the thin defects.
    """
    b = images.shape[0]
    draws = torch.randint(0, 2, (b, 2), generator=gen)
    rots = torch.randint(0, 4 if rotate else 1, (b,), generator=gen)
    out_i, out_m = [], []
    for k in range(b):
        x = images[k]
        m = masks[k] if masks is not None else None
        dims = []
        if draws[k, 0]:
            dims.append(-1)
        if draws[k, 1]:
            dims.append(-2)
        if dims:
            x = torch.flip(x, dims)
            m = torch.flip(m, dims) if m is not None else None
        r = int(rots[k])
        if r and x.shape[-1] == x.shape[-2]:
            x = torch.rot90(x, r, (-2, -1))
            m = torch.rot90(m, r, (-2, -1)) if m is not None else None
        out_i.append(x)
        out_m.append(m)
    # with masks given, every entry of out_m is a tensor
    return torch.stack(out_i), (torch.stack(cast(list[torch.Tensor], out_m)) if masks is not None else None)
