"""Dual-branch attention for DualAnoDiff (Jin et al., CVPR 2025): two interrelated branches of one
frozen UNet, each with its own LoRA, that exchange information after every attention layer.

The UNet batch holds the branches interleaved, ``[whole_0, part_0, whole_1, part_1, ...]`` (with
classifier-free guidance the unconditional rows come first, still interleaved), so row 2k is the
whole defective image and row 2k+1 its defect part. On every attention layer (self and cross):

* branch b computes ordinary attention with the frozen projections plus its own low-rank update,
  W_q x + (α/r) B_b A_b x for q, k, v and the output projection (keys and values from its own
  tokens / its own prompt);
* the Self-Attention Interaction then lets each spatial token of one branch attend to the same
  token of the other: with O = (O_whole, O_part) the two outputs at one position,
  O ← O + W_o · softmax(q(LN O) k(LN O)ᵀ / √d) v(LN O)  over the length-2 branch axis.

The LoRA up-projections and W_o start at zero, so before fitting both branches reproduce the
pretrained UNet exactly (the official code starts the interaction from random weights; starting
from the pretrained behaviour is the usual choice for adapters and makes that property testable).

diffusers' LoRA layers (peft) switch adapters per model call, not per batch row inside one
attention layer, so the per-branch low-rank updates live in these processors. Their weights are
one `DualAdapters` module (a ModuleDict keyed by layer name): optimise `.parameters()`, save with
`.state_dict()`. Processors are plain callables installed with diffusers' attention-processor API.
With `background_dim` the adapters also carry DualAnoDiff's background compensation
(`anomalyforge.diffusion.background_compensation`).
"""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from anomalyforge.diffusion.attention import attention_input, attention_output
from anomalyforge.diffusion.background_compensation import BackgroundFusion, ReferenceStore

BRANCHES = 2  # 0: the whole defective image, 1: the defect part


class LowRank(nn.Module):
    """(α/r) · B A x, computed in float32; B starts at zero so the update starts at zero."""

    def __init__(self, d_in: int, d_out: int, rank: int, alpha: float | None = None) -> None:
        super().__init__()
        self.down = nn.Linear(d_in, rank, bias=False)
        self.up = nn.Linear(rank, d_out, bias=False)
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.up.weight)
        self.scale = (alpha if alpha is not None else rank) / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.up(self.down(x.float())) * self.scale).to(x.dtype)


class BranchInteraction(nn.Module):
    """Single-head attention across the branch axis at each token; residual, zero-initialised output.

    `inner` (default `dim`, as the official code) is the width of q, k, v: a smaller one shrinks
    the layer from 4·dim² weights (about 100 M over SD 1.5's UNet) to 4·dim·inner."""

    def __init__(self, dim: int, inner: int | None = None) -> None:
        super().__init__()
        inner = dim if inner is None else min(dim, inner)
        self.norm = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, inner)
        self.k = nn.Linear(dim, inner)
        self.v = nn.Linear(dim, inner)
        self.out = nn.Linear(inner, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, o: torch.Tensor) -> torch.Tensor:
        """o: (P, branches, N, C) -> same shape."""
        p, b, n, c = o.shape
        x = o.float().permute(0, 2, 1, 3).reshape(p * n, b, c)
        h = self.norm(x)
        mixed = F.scaled_dot_product_attention(self.q(h), self.k(h), self.v(h))
        x = self.out(mixed).reshape(p, n, b, c).permute(0, 2, 1, 3)
        return o + x.to(o.dtype)


class DualLayer(nn.Module):
    """The trainable parts of one attention layer: per-branch LoRA on q, k, v, out + interaction,
    and on self-attention layers optionally the background fusion of the BCM."""

    def __init__(self, d_query: int, d_context: int, d_inner: int, d_out: int, rank: int,
                 interaction: bool = True, interaction_dim: int | None = None,
                 background_dim: int | None = None) -> None:
        super().__init__()
        self.q = nn.ModuleList(LowRank(d_query, d_inner, rank) for _ in range(BRANCHES))
        self.k = nn.ModuleList(LowRank(d_context, d_inner, rank) for _ in range(BRANCHES))
        self.v = nn.ModuleList(LowRank(d_context, d_inner, rank) for _ in range(BRANCHES))
        self.out = nn.ModuleList(LowRank(d_inner, d_out, rank) for _ in range(BRANCHES))
        self.interaction = BranchInteraction(d_out, interaction_dim) if interaction else None
        self.background = BackgroundFusion(d_query, background_dim) if background_dim else None


class DualAttnProcessor:
    """diffusers attention processor running the two branches of `layer` (see module doc).

    With a `store` in mode "write" (the BCM reference pass: whole-image rows only) every row runs
    the whole branch without interaction and self-attention layers record their input tokens; in
    mode "read" the whole branch of those layers takes keys and values from the background fusion."""

    def __init__(self, layer: DualLayer, key: str = "", store: ReferenceStore | None = None) -> None:
        self.layer, self.key, self.store = layer, key, store

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None,
                 *args, **kwargs) -> torch.Tensor:
        layer = self.layer
        residual = hidden_states
        hidden_states, grid = attention_input(attn, hidden_states, temb)
        batch = hidden_states.shape[0]
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        if encoder_hidden_states is not None and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        mode = self.store.mode if self.store is not None else "off"
        bcm = layer.background is not None and encoder_hidden_states is None
        if mode == "write":
            assert self.store is not None  # mode is "off" without a store
            if bcm:
                self.store.tokens[self.key] = hidden_states
            out = self._branch(attn, 0, hidden_states, context, attention_mask)
            return attention_output(attn, attn.to_out[1](out), residual, grid)
        if batch % BRANCHES:
            raise ValueError(f"dual-branch attention needs an even batch (whole, part pairs), got {batch}")
        outs = []
        for b in range(BRANCHES):
            h, ctx = hidden_states[b::BRANCHES], context[b::BRANCHES]
            if b == 0 and mode == "read" and bcm:
                assert self.store is not None and layer.background is not None  # implied by mode and bcm
                ctx = layer.background(h, self.store.tokens[self.key])
            mask = None if attention_mask is None else attention_mask[b::BRANCHES]
            outs.append(self._branch(attn, b, h, ctx, mask))
        out = torch.stack(outs, dim=1)  # (pairs, branches, N, C)
        if layer.interaction is not None:
            out = layer.interaction(out)
        hidden_states = attn.to_out[1](out.reshape(batch, *out.shape[2:]))  # back to interleaved rows
        return attention_output(attn, hidden_states, residual, grid)

    def _branch(self, attn, b: int, h: torch.Tensor, ctx: torch.Tensor, attention_mask) -> torch.Tensor:
        """Attention of branch b's rows: frozen projections + that branch's low-rank updates."""
        layer = self.layer
        q = attn.to_q(h) + layer.q[b](h)
        k = attn.to_k(ctx) + layer.k[b](ctx)
        v = attn.to_v(ctx) + layer.v[b](ctx)
        mask = None
        if attention_mask is not None:
            mask = attn.prepare_attention_mask(attention_mask, ctx.shape[1], h.shape[0])
            mask = mask.view(h.shape[0], attn.heads, -1, mask.shape[-1])
        heads = attn.heads
        q, k, v = (t.view(t.shape[0], -1, heads, t.shape[-1] // heads).transpose(1, 2) for t in (q, k, v))
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=attn.scale)
        o = o.transpose(1, 2).reshape(h.shape[0], -1, heads * o.shape[-1]).to(h.dtype)
        return attn.to_out[0](o) + layer.out[b](o)


def _key(name: str) -> str:
    return name.replace(".", "__")


class DualAdapters(nn.ModuleDict):
    """Every attention layer's `DualLayer`, keyed by the layer's processor name ('.' -> '__').

    `store` is the BCM's reference store shared by the installed processors (unused without BCM)."""

    @classmethod
    def for_unet(cls, unet, rank: int, interaction: bool = True, interaction_dim: int | None = None,
                 background_dim: int | None = None) -> DualAdapters:
        """Fresh adapters (zero updates) sized for every attention layer of `unet`; background_dim > 0
        adds the BCM's background fusion (that bottleneck width) to every self-attention layer."""
        layers = {}
        for name, attn in _attention_layers(unet).items():
            bg = background_dim if not attn.is_cross_attention else None
            layers[_key(name)] = DualLayer(attn.to_q.in_features, attn.to_k.in_features, attn.to_q.out_features,
                                           attn.to_out[0].out_features, rank, interaction, interaction_dim, bg)
        return cls(layers)

    def __init__(self, modules=None) -> None:
        super().__init__(modules)
        self.store = ReferenceStore()

    @property
    def has_background(self) -> bool:
        return any(layer.background is not None for layer in self.values())

    def install(self, unet) -> dict:
        """Put a `DualAttnProcessor` on every attention layer; returns the previous processors
        (restore with `unet.set_attn_processor(previous)`)."""
        previous = dict(unet.attn_processors)
        missing = [n for n in previous if _key(n) not in self]
        if missing:
            raise ValueError(f"adapters do not match this UNet (no layer {missing[0]})")
        unet.set_attn_processor({n: DualAttnProcessor(cast(DualLayer, self[_key(n)]), _key(n), self.store)
                                 for n in previous})
        return previous


def _attention_layers(unet) -> dict:
    """processor name -> the diffusers Attention module it belongs to."""
    out = {}
    for name in unet.attn_processors:
        module = unet
        for part in name[: -len(".processor")].split("."):
            module = getattr(module, part)
        out[name] = module
    return out


def interleave(whole: torch.Tensor, part: torch.Tensor) -> torch.Tensor:
    """(B, ...) and (B, ...) -> (2B, ...) rows [whole_0, part_0, whole_1, part_1, ...]."""
    return torch.stack([whole, part], dim=1).reshape(-1, *whole.shape[1:])


def deinterleave(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of `interleave`."""
    return x[0::BRANCHES], x[1::BRANCHES]
