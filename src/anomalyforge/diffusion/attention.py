"""Cross-attention processors for the UNet, and AnomalyDiffusion's adaptive attention re-weighting.

Adaptive Attention Re-weighting (Hu et al. 2024, eq. 7–8): at each denoising step the current
clean estimate x̂_0 is compared with the good image y inside each connected region m_i of the mask
M = {m_1..m_N}:

    d_i = ||m_i ⊙ y − m_i ⊙ x̂_0||²,    w_i = ||M||_1 · Softmax_i(f(d_i)),    f(x) = 1/x  (−∞ if x = 0)

Here ||M||_1 is the number of regions N, so the weights average 1 and a single region keeps weight
1 (our reading of the paper; with f = 1/x the region whose content is still closest to the good
image — the least "filled" defect — gets the largest weight). The weight map W is w_i inside
region i and 1 elsewhere; the cross-attention probabilities of the anomaly-embedding tokens are
multiplied by W (per query pixel, no renormalisation), every other token and pixel is untouched.

`ReweightingAttnProcessor` implements this with diffusers' attention-processor API; install it with
`install_processors(unet, controller)`; the `AttentionController` carries the weight map and the
anomaly tokens' positions between the sampler and the processors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from anomalyforge.diffusion.masked_loss import mask_to_latent


def mask_regions(mask: np.ndarray) -> list[np.ndarray]:
    """Boolean masks of the 8-connected regions of `mask` (H, W), largest first."""
    n, labels = cv2.connectedComponents((mask > 0).astype(np.uint8), connectivity=8)
    regions = [labels == i for i in range(1, n)]
    return sorted(regions, key=lambda r: -int(r.sum()))


def region_weights(differences: torch.Tensor) -> torch.Tensor:
    """Eq. 7 for one mask: (N,) squared differences d_i -> (N,) weights N · softmax(1/d_i), 1/0 = −∞."""
    d = differences.double()
    f = torch.where(d > 0, 1.0 / d.clamp_min(1e-300), torch.full_like(d, -math.inf))
    n = d.numel()
    if n == 0:
        return d.float()
    if bool(torch.isinf(f).all()):  # every region identical to y: nothing to prefer
        return torch.ones_like(d).float()
    return (n * torch.softmax(f, dim=0)).float()


def weight_map(masks: list[np.ndarray], good: torch.Tensor, x0_hat: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) weight map W of eq. 7–8 for a batch.

    masks: B masks (H, W) at the resolution of `good` / `x0_hat` (B, C, H, W) (pixels or latents).
    """
    b, _, h, w = good.shape
    out = torch.ones(b, 1, h, w, dtype=torch.float32, device=good.device)
    for i in range(b):
        regions = mask_regions(masks[i])
        if not regions:
            continue
        diffs = torch.stack([((good[i] - x0_hat[i]) ** 2)[:, torch.from_numpy(r).to(good.device)].sum()
                             for r in regions])
        ws = region_weights(diffs)
        for r, wt in zip(regions, ws, strict=False):
            out[i, 0][torch.from_numpy(r).to(good.device)] = wt.to(out.device)
    return out


def attention_input(attn, hidden_states: torch.Tensor, temb: torch.Tensor | None
                    ) -> tuple[torch.Tensor, tuple[int, ...] | None]:
    """The start every diffusers attention processor shares: spatial norm, a (B, C, H, W) input
    flattened to (B, HW, C) (its shape is returned to undo it), group norm."""
    if attn.spatial_norm is not None:
        hidden_states = attn.spatial_norm(hidden_states, temb)
    grid = None
    if hidden_states.ndim == 4:
        grid = tuple(hidden_states.shape)
        hidden_states = hidden_states.view(grid[0], grid[1], grid[2] * grid[3]).transpose(1, 2)
    if attn.group_norm is not None:
        hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
    return hidden_states, grid


def attention_output(attn, hidden_states: torch.Tensor, residual: torch.Tensor,
                     grid: tuple[int, ...] | None) -> torch.Tensor:
    """The shared end: back to (B, C, H, W) when the input was, residual, output rescaling."""
    if grid is not None:
        hidden_states = hidden_states.transpose(-1, -2).reshape(grid)
    if attn.residual_connection:
        hidden_states = hidden_states + residual
    return hidden_states / attn.rescale_output_factor


@dataclass
class AttentionController:
    """State shared by the re-weighting processors during one sampling run.

    weights: (B, 1, h, w) map (any resolution; resized per layer) or None (= plain attention).
    token_positions: sequence positions of the anomaly-embedding tokens in the text conditioning.
    cond_offset: index of the first conditioned sample in the UNet batch (B when the batch is
    [unconditional; conditional] for classifier-free guidance, else 0).
    store: when True, the last re-weighted attention probabilities are kept in `last_probs`
    (for tests and visualisation).
    """

    weights: torch.Tensor | None = None
    token_positions: list[int] = field(default_factory=list)
    cond_offset: int = 0
    store: bool = False
    last_probs: dict[str, torch.Tensor] = field(default_factory=dict)


class ReweightingAttnProcessor:
    """diffusers attention processor: standard attention, plus eq. 8 on cross-attention layers."""

    def __init__(self, controller: AttentionController, name: str = "") -> None:
        self.controller = controller
        self.name = name

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None,
                 *args, **kwargs) -> torch.Tensor:
        residual = hidden_states
        hidden_states, grid = attention_input(attn, hidden_states, temb)
        is_cross = encoder_hidden_states is not None
        batch, seq_len, _ = hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
        attention_mask = attn.prepare_attention_mask(attention_mask, seq_len, batch)
        query = attn.to_q(hidden_states)
        if not is_cross:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))
        value = attn.head_to_batch_dim(attn.to_v(encoder_hidden_states))
        query = attn.head_to_batch_dim(query)
        probs = attn.get_attention_scores(query, key, attention_mask)
        if is_cross:
            probs = self._reweight(probs, batch, attn.heads)
        hidden_states = attn.batch_to_head_dim(torch.bmm(probs, value))
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        return attention_output(attn, hidden_states, residual, grid)

    def _reweight(self, probs: torch.Tensor, batch: int, heads: int) -> torch.Tensor:
        c = self.controller
        if c.weights is None or not c.token_positions:
            if c.store:
                c.last_probs[self.name] = probs.detach()
            return probs
        n_query = probs.shape[1]
        wb, _, wh, ww = c.weights.shape
        # this layer's query grid has the weight map's aspect ratio
        scale = math.sqrt(wh * ww / n_query)
        h, w = max(1, round(wh / scale)), max(1, round(ww / scale))
        wmap = F.interpolate(c.weights.float(), size=(h, w), mode="area").reshape(wb, h * w)
        full = torch.ones(batch, h * w, device=probs.device, dtype=probs.dtype)
        full[c.cond_offset:c.cond_offset + wb] = wmap.to(probs.device, probs.dtype)
        full = full.repeat_interleave(heads, dim=0)  # head_to_batch_dim order: batch-major
        factor = torch.ones_like(probs)
        factor[:, :, c.token_positions] = full.unsqueeze(-1).expand(-1, -1, len(c.token_positions))
        out = probs * factor
        if c.store:
            c.last_probs[self.name] = out.detach()
        return out


def install_processors(unet, controller: AttentionController) -> dict:
    """Put a `ReweightingAttnProcessor` on every attention layer of `unet`; returns the previous
    processors so callers can restore them with `unet.set_attn_processor(previous)`."""
    previous = dict(unet.attn_processors)
    unet.set_attn_processor({name: ReweightingAttnProcessor(controller, name) for name in previous})
    return previous


def make_reweight_hook(ldm, controller: AttentionController, masks: list[np.ndarray], good_images: torch.Tensor,
                       good_latents: torch.Tensor, space: str = "pixel"):
    """The `before_step` hook for `blended_sample` that updates `controller.weights` from the
    previous step's clean estimate x̂_0 (eq. 7): in pixel space (decode x̂_0 with the VAE, as the
    paper) or in latent space (cheaper: masks max-pooled to the latent grid). No weights at the
    first step (no x̂_0 yet)."""

    hw = (good_latents.shape[-2], good_latents.shape[-1])
    lat_masks = [(mask_to_latent(torch.from_numpy(m > 0).float()[None, None], hw)[0, 0] > 0).numpy()
                 for m in masks]
    y_cpu, y0_cpu = good_images.float().cpu(), good_latents.float().cpu()

    def hook(i: int, t, x_t: torch.Tensor, x0_hat: torch.Tensor | None) -> None:
        if x0_hat is None:
            controller.weights = None
        elif space == "pixel":
            with torch.no_grad():
                x0_img = ldm.decode_latents(x0_hat).cpu()
            controller.weights = weight_map(masks, y_cpu, x0_img)
        else:
            controller.weights = weight_map(lat_masks, y0_cpu, x0_hat.float().cpu())

    return hook
