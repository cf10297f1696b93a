"""Background Compensation Module (BCM) of DualAnoDiff: the whole-image branch attends to a
background image, so generated objects keep a plausible shape and surroundings.

How it works (as the official code does it; the paper gives the idea, not the formula):

1. The background image, the object blacked out (`masks.part.background_image`), is encoded by the
   VAE and noised to the same timestep as the main batch, with fresh noise at every UNet call.
2. Before every UNet call a *reference pass* runs the same UNet on it, prompted like the
   whole-image rows, with the whole branch's LoRA and no branch interaction; each self-attention
   layer records its input tokens h_bg (`ReferenceStore`, mode "write"). Its output is discarded.
3. In the main call, each self-attention layer of the whole branch takes its keys and values from
   c = (1 − a)·h + a·MLP(h_bg) instead of its own tokens h (`BackgroundFusion`); queries stay h.
   a is one scalar per layer, starting at 0, so an unfitted BCM changes nothing; the MLP is two
   linear layers through a 320-wide bottleneck. The part branch never sees the background.

`BackgroundReference` installs step 2 as a forward pre-hook on the UNet, so the shared sampler
and training loss (`blended_sample`, `masked_diffusion_loss`) run unchanged inside it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class BackgroundFusion(nn.Module):
    """c = (1 − a)·h + a·MLP(h_bg): the key/value source of one whole-branch self-attention layer."""

    def __init__(self, dim: int, hidden: int = 320) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.Linear(hidden, dim))
        self.gate = nn.Parameter(torch.zeros(()))

    def forward(self, h: torch.Tensor, h_bg: torch.Tensor) -> torch.Tensor:
        if h_bg.shape != h.shape:
            raise ValueError(f"background tokens {tuple(h_bg.shape)} do not match the whole rows {tuple(h.shape)}")
        a = self.gate
        return ((1 - a) * h.float() + a * self.mlp(h_bg.float())).to(h.dtype)


class ReferenceStore:
    """Shared by the processors of one `DualAdapters`: the mode of the current UNet call and the
    self-attention tokens recorded by the reference pass, keyed by layer."""

    def __init__(self) -> None:
        self.mode = "off"  # "off": no BCM; "write": reference pass; "read": main call
        self.tokens: dict[str, torch.Tensor] = {}

    def reset(self) -> None:
        self.mode, self.tokens = "off", {}


Noise = Callable[[tuple[int, ...]], torch.Tensor]


class BackgroundReference:
    """Context manager: while open, every call of `unet` is preceded by the BCM reference pass.

    latents: (P, C, h, w) scaled VAE latents of the backgrounds, one per pair (whole row) of the
    batch; uncond_latents: the same for the unconditional rows of classifier-free guidance (the
    official code uses a mid-grey image). noise(shape) gives the reference noise of one call.
    """

    def __init__(self, unet, store: ReferenceStore, add_noise: Callable, latents: torch.Tensor, noise: Noise,
                 uncond_latents: torch.Tensor | None = None) -> None:
        self.unet, self.store, self.add_noise = unet, store, add_noise
        self.latents, self.uncond, self.noise = latents, uncond_latents, noise
        self._handle = None

    def _rows(self, whole_rows: int) -> torch.Tensor:
        p = self.latents.shape[0]
        if whole_rows == p:
            return self.latents
        if self.uncond is not None and whole_rows == 2 * p:
            return torch.cat([self.uncond, self.latents])
        raise ValueError(f"background compensation: {whole_rows} whole-image rows in the UNet batch, "
                         f"but {p} background latents")

    def _hook(self, module, args, kwargs):
        if self.store.mode == "write":  # the reference pass itself
            return None
        sample = args[0] if args else kwargs["sample"]
        t = args[1] if len(args) > 1 else kwargs["timestep"]
        context = kwargs.get("encoder_hidden_states")
        if context is None and len(args) > 2:
            context = args[2]
        rows = sample.shape[0] // 2
        lat = self._rows(rows).to(sample.device)
        t = torch.as_tensor(t, device=sample.device)
        t_ref = t[0::2] if t.ndim == 1 and t.shape[0] == sample.shape[0] else t.reshape(1).expand(rows)
        noisy = self.add_noise(lat.float(), self.noise(tuple(lat.shape)).to(sample.device), t_ref)
        self.store.tokens = {}
        self.store.mode = "write"
        try:
            module(noisy.to(sample.dtype), t_ref, encoder_hidden_states=context[0::2])
        finally:
            self.store.mode = "read"
        return None

    def __enter__(self) -> BackgroundReference:
        self.store.reset()
        self._handle = self.unet.register_forward_pre_hook(self._hook, with_kwargs=True)
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self.store.reset()
