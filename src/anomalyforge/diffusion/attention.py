"""Cross-attention processors for the UNet, and AnomalyDiffusion's Adaptive Attention Re-weighting (AAR).

AAR as the official code does it (Hu et al. 2024, sec. 3.3; `ldm/models/diffusion/ddim.py` and
`ldm/modules/attention.py` of sjtuplayer/anomalydiffusion), per denoising step at timestep t:

1. The latent mask M is dilated by r(t) = ⌊(t + 100)·8 / 1000⌋ latent cells (a (2r+1)² square
   max filter): M′ = dilate(M, r(t)). The same M′ is the blending mask of that step.
2. Per latent cell, d = mean_c (M′ ⊙ (x_t − y_0))², x_t the current noisy latent, y_0 the good
   image's clean latent.
3. w = ‖M′‖₁ · (1/d) / Σ_{M′} (1/d) inside M′ (so the weights average 1 over M′), then cells
   with w < 1 (and every cell outside M′) get 1 and w is clipped to 1.5: W ∈ [1, 1.5]. The cells
   still closest to the good image — where the defect has not appeared yet — get the most weight.
4. In every cross-attention layer the pre-softmax logits q·kᵀ/√d of the anomaly-embedding tokens
   are multiplied by W (resized bilinearly to the layer's grid), per query pixel; then softmax.

Differences, on purpose: a masked cell with d = 0 exactly (it never happens while x_t is noisy)
gets weight 1 and does not enter the sum (the official code lets it enter as −1). The official
code turns AAR on for texture categories only; `AnomalyDiffusionConfig.reweight` = "texture" does
the same, "always" / "never" override it.

`ReweightingAttnProcessor` implements step 4 with diffusers' attention-processor API; install it
with `install_processors(unet, controller)`; the `AttentionController` carries the weight map and
the anomaly tokens' positions between the sampler and the processors. `make_reweight_hook` is the
sampler hook doing steps 1–3.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

AAR_MAX_WEIGHT = 1.5  # official clip
AAR_MIN_WEIGHT = 1.0


def dilation_radius(t: int, num_train_timesteps: int = 1000) -> int:
    """r(t) = ⌊(t + 100)·8 / 1000⌋ latent cells (official, 200-step DDIM; 0 at t < 25, 8 at t = 999)."""
    return int((int(t) + 100) * 8 // num_train_timesteps)


def dilate_latent_mask(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """(B, 1, h, w) mask dilated by a (2·radius+1)² square max filter (zero padding at the border)."""
    if radius <= 0:
        return mask
    return F.max_pool2d(mask.float(), kernel_size=2 * radius + 1, stride=1, padding=radius)


def aar_weights(x_t: torch.Tensor, y0: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The AAR weight map W (B, 1, h, w) in [1, 1.5] (steps 2–3 of the module doc).

    x_t, y0: (B, C, h, w) latents; mask: (B, 1, h, w) dilated mask M′ in {0, 1}.
    """
    m = mask.float()
    d = ((m * (x_t.float() - y0.float())) ** 2).mean(dim=1, keepdim=True)
    inside = (m > 0) & (d > 0)
    inv = torch.where(inside, 1.0 / d.clamp_min(1e-30), torch.zeros_like(d))
    total = inv.sum(dim=(1, 2, 3), keepdim=True)
    n = m.sum(dim=(1, 2, 3), keepdim=True)
    w = torch.where(total > 0, n * inv / total.clamp_min(1e-30), torch.zeros_like(inv))
    return w.clamp(AAR_MIN_WEIGHT, AAR_MAX_WEIGHT)


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

    weights: (B, 1, h, w) map W (any resolution; resized per layer) or None (= plain attention).
    token_positions: sequence positions of the anomaly-embedding tokens in the text conditioning.
    cond_offset: index of the first conditioned sample in the UNet batch (B when the batch is
    [unconditional; conditional] for classifier-free guidance, else 0).
    store: when True, the last attention probabilities are kept in `last_probs` and the last
    (re-weighted) pre-softmax logits in `last_logits` (for tests and visualisation).
    """

    weights: torch.Tensor | None = None
    token_positions: list[int] = field(default_factory=list)
    cond_offset: int = 0
    store: bool = False
    last_probs: dict[str, torch.Tensor] = field(default_factory=dict)
    last_logits: dict[str, torch.Tensor] = field(default_factory=dict)


class ReweightingAttnProcessor:
    """diffusers attention processor: standard attention, plus AAR (logits of the anomaly tokens
    times W before the softmax) on cross-attention layers."""

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
        probs = self._probs(attn, query, key, attention_mask, batch, is_cross)
        hidden_states = attn.batch_to_head_dim(torch.bmm(probs, value))
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        return attention_output(attn, hidden_states, residual, grid)

    def _probs(self, attn, query: torch.Tensor, key: torch.Tensor, attention_mask: torch.Tensor | None,
               batch: int, is_cross: bool) -> torch.Tensor:
        """softmax(W ⊙ q·kᵀ·scale + mask) — what `attn.get_attention_scores` does, with the AAR factor
        on the anomaly tokens' logits in between (diffusers' upcast rules kept)."""
        c = self.controller
        dtype = query.dtype
        if attn.upcast_attention:
            query, key = query.float(), key.float()
        logits = torch.bmm(query, key.transpose(-1, -2)) * attn.scale
        if is_cross and c.weights is not None and c.token_positions:
            logits = logits * self._factor(logits, batch, attn.heads)
        if attention_mask is not None:
            logits = logits + attention_mask
        if c.store and is_cross:
            c.last_logits[self.name] = logits.detach()
        if attn.upcast_softmax:
            logits = logits.float()
        probs = logits.softmax(dim=-1).to(dtype)
        if c.store and is_cross:
            c.last_probs[self.name] = probs.detach()
        return probs

    def _factor(self, logits: torch.Tensor, batch: int, heads: int) -> torch.Tensor:
        """(batch·heads, queries, tokens) multiplier: W on the anomaly tokens' columns, 1 elsewhere."""
        c = self.controller
        assert c.weights is not None  # _factor runs only while weights are set
        n_query = logits.shape[1]
        wb, _, wh, ww = c.weights.shape
        # this layer's query grid has the weight map's aspect ratio
        scale = math.sqrt(wh * ww / n_query)
        h, w = max(1, round(wh / scale)), max(1, round(ww / scale))
        wmap = c.weights.float()
        if (h, w) != (wh, ww):  # official: torchvision Resize (bilinear, antialiased)
            wmap = F.interpolate(wmap, size=(h, w), mode="bilinear", align_corners=False, antialias=h < wh)
        wmap = wmap.reshape(wb, h * w)
        full = torch.ones(batch, h * w, device=logits.device, dtype=logits.dtype)
        full[c.cond_offset:c.cond_offset + wb] = wmap.to(logits.device, logits.dtype)
        full = full.repeat_interleave(heads, dim=0)  # head_to_batch_dim order: batch-major
        factor = torch.ones_like(logits)
        factor[:, :, c.token_positions] = full.unsqueeze(-1).expand(-1, -1, len(c.token_positions))
        return factor


def install_processors(unet, controller: AttentionController) -> dict:
    """Put a `ReweightingAttnProcessor` on every attention layer of `unet`; returns the previous
    processors so callers can restore them with `unet.set_attn_processor(previous)`."""
    previous = dict(unet.attn_processors)
    unet.set_attn_processor({name: ReweightingAttnProcessor(controller, name) for name in previous})
    return previous


def blend_mask_schedule(mask_latent: torch.Tensor, num_train_timesteps: int = 1000):
    """t -> M′(t) = dilate(M, r(t)): the blending mask of each step (and AAR's region)."""
    cache: dict[int, torch.Tensor] = {}

    def at(t) -> torch.Tensor:
        r = dilation_radius(int(t), num_train_timesteps)
        if r not in cache:
            cache[r] = dilate_latent_mask(mask_latent, r)
        return cache[r]

    return at


def make_reweight_hook(controller: AttentionController, good_latents: torch.Tensor, mask_at):
    """The `before_step` hook for `blended_sample`: sets `controller.weights` = W(x_t, y_0, M′(t))
    (steps 1–3 of the module doc) before every UNet call, from the current latent x_t."""
    y0 = good_latents.float()

    def hook(i: int, t, x_t: torch.Tensor, x0_hat: torch.Tensor | None) -> None:
        m = mask_at(t).to(x_t.device)
        controller.weights = aar_weights(x_t, y0.to(x_t.device), m)

    return hook
