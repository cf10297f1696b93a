"""Textual inversion without touching the text encoder's weights.

Placeholder tokens (e.g. `<anomaly-crack-0>` … `<anomaly-crack-7>`) are added to the tokenizer and
the token-embedding table is resized so their ids are valid, but their vectors live in a separate
`TokenBank` (one `nn.Parameter` per group). A forward hook on the text encoder's token-embedding
layer swaps the looked-up rows of placeholder ids for the bank's vectors (or for per-sample vectors
such as a spatial encoder's output). Only the bank receives gradients; the encoder is never
modified, which `tests/diffusion` proves. Banks save/load with safetensors.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes
from torch import nn

from anomalyforge.atomic import write_bytes_atomic
from anomalyforge.errors import ConfigError


def placeholder_names(group: str, n: int) -> list[str]:
    """`n` placeholder token strings for `group` (a defect type or a role such as "spatial")."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in group)
    return [f"<anomaly-{safe}-{i}>" for i in range(n)]


def add_placeholder_tokens(tokenizer, text_encoder, names: list[str]) -> list[int]:
    """Add `names` to the tokenizer (if not there), resize the embedding table; return their ids.

    The new rows of the table are never read for conditioning (the hook replaces them), so the
    encoder's behaviour on ordinary text is unchanged. They are zeros, not transformers' random
    initialisation: that draws from the global torch RNG (so the table, and anything computed
    from it, would depend on whatever ran before) and would also advance that RNG.
    """
    new = [n for n in names if tokenizer.convert_tokens_to_ids(n) in (None, tokenizer.unk_token_id)]
    if new:
        tokenizer.add_tokens(new, special_tokens=True)
    old_rows = text_encoder.get_input_embeddings().num_embeddings
    if old_rows < len(tokenizer):
        weight = text_encoder.get_input_embeddings().weight
        devices = [weight.device] if weight.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # the global RNG (CPU and the table's GPU) left alone
            text_encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        with torch.no_grad():
            text_encoder.get_input_embeddings().weight[old_rows:].zero_()
    ids = tokenizer.convert_tokens_to_ids(names)
    for name, tid in zip(names, ids, strict=False):
        if tid is None or tid == tokenizer.unk_token_id:
            raise ConfigError(f"tokenizer could not add placeholder token {name!r}")
    return list(ids)


def init_vectors(tokenizer, text_encoder, init_word: str | None, n: int, generator: torch.Generator) -> torch.Tensor:
    """(n, dim) starting vectors: the mean embedding of `init_word`'s tokens (textual inversion's
    usual start), plus a little seeded noise so the n tokens differ; random if no word.

    The noise scale is the spread of the tokenizer's own vocabulary (`tokenizer.vocab_size` rows):
    placeholder rows added by `add_placeholder_tokens` are left out, so the start does not depend
    on how many placeholders (of this or another generator) the table holds."""
    table = text_encoder.get_input_embeddings().weight.detach().float().cpu()
    table = table[: min(int(getattr(tokenizer, "vocab_size", None) or len(table)), len(table))]
    dim = table.shape[1]
    noise = torch.randn(n, dim, generator=generator) * table.std() * 0.1
    if init_word:
        ids = tokenizer(init_word, add_special_tokens=False).input_ids
        if ids:
            return table[ids].mean(0, keepdim=True).repeat(n, 1) + noise
    return torch.randn(n, dim, generator=generator) * table.std()


class TokenBank(nn.Module):
    """Learned vectors for groups of placeholder tokens: group name -> (n_tokens, dim) parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.vectors = nn.ParameterDict()
        self.token_names: dict[str, list[str]] = {}

    def add_group(self, group: str, vectors: torch.Tensor, names: list[str]) -> None:
        key = self._key(group)
        self.vectors[key] = nn.Parameter(vectors.detach().clone().float())
        self.token_names[group] = list(names)

    @staticmethod
    def _key(group: str) -> str:
        return "g_" + "".join(c if c.isalnum() else f"_{ord(c):x}_" for c in group)

    def group(self, group: str) -> nn.Parameter:
        key = self._key(group)
        if key in self.vectors:
            return self.vectors[key]
        raise ConfigError(f"no learned embedding for {group!r}; fitted: "
                              f"{', '.join(sorted(self.token_names)) or 'none'}")

    @property
    def groups(self) -> list[str]:
        return sorted(self.token_names)

    def save(self, path: str | Path) -> None:
        """Write every group's vectors (and token names as metadata) to a safetensors file."""


        tensors = {g: self.group(g).detach().float().cpu().contiguous() for g in self.groups}
        write_bytes_atomic(path, safetensors_bytes(tensors, metadata={"token_names": json.dumps(self.token_names)}))

    @classmethod
    def load(cls, path: str | Path) -> TokenBank:
        """Read a bank written by `save`; a clear ConfigError if the file is missing or foreign."""


        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: learned embeddings not found (was fit run?)")
        bank = cls()
        try:
            with safe_open(str(path), framework="pt") as fh:
                names = json.loads((fh.metadata() or {})["token_names"])
                for g in fh.keys():  # noqa: SIM118 (safe_open handles are not iterable)
                    bank.add_group(g, fh.get_tensor(g), names[g])
        except (KeyError, OSError, ValueError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: not an anomalyforge embedding file ({exc.__class__.__name__})") from None
        return bank


class EmbeddingInjector:
    """Swaps token embeddings of placeholder ids for given vectors while text is encoded.

    Use `with injector.inject({token_id: vec})` around `text_encoder(...)`. `vec` is (dim,) for one
    vector shared by the batch or (B, dim) for per-sample vectors (e.g. the spatial embedding).
    Gradients flow into `vec` only.
    """

    def __init__(self, text_encoder) -> None:
        self.text_encoder = text_encoder
        self._overrides: Mapping[int, torch.Tensor] | None = None
        self._handle = text_encoder.get_input_embeddings().register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        if not self._overrides:
            return output
        ids = inputs[0]
        out = output
        for tid, vec in self._overrides.items():
            sel = (ids == tid).unsqueeze(-1)
            if not bool(sel.any()):
                continue
            v = vec.to(out.dtype)
            v = v.view(1, 1, -1) if v.ndim == 1 else v.view(v.shape[0], 1, -1)
            out = torch.where(sel, v, out)
        return out

    @contextmanager
    def inject(self, overrides: Mapping[int, torch.Tensor]) -> Iterator[None]:
        self._overrides = overrides
        try:
            yield
        finally:
            self._overrides = None

    def remove(self) -> None:
        self._handle.remove()


def tokenize(tokenizer, prompts: list[str], device: torch.device) -> torch.Tensor:
    """Token ids padded to the tokenizer's max length (77 for CLIP)."""
    return tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length,
                     truncation=True, return_tensors="pt").input_ids.to(device)


def encode_prompts(text_encoder, tokenizer, injector: EmbeddingInjector, prompts: list[str],
                   overrides: Mapping[int, torch.Tensor], device: torch.device) -> torch.Tensor:
    """(B, 77, dim) text conditioning with placeholder tokens replaced by `overrides`."""
    ids = tokenize(tokenizer, prompts, device)
    with injector.inject(overrides):
        return text_encoder(ids)[0]


def token_positions(tokenizer, prompt: str, names: list[str]) -> list[int]:
    """Sequence positions (in the padded token ids of `prompt`) of the tokens in `names` — what the
    attention re-weighting needs to find the anomaly tokens' columns."""
    ids = tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True).input_ids
    wanted = set(tokenizer.convert_tokens_to_ids(names))
    return [i for i, t in enumerate(ids) if t in wanted]


# Textual inversion's prompt templates (Gal et al. 2023; the official AnomalyDiffusion code trains with
# them, `ldm/data/personalized.py`): 27 "photo" phrasings, then the same with "a photo of" read as
# "an illustration of" and "a depiction of" — 81 in all, drawn uniformly for every training sample.
_PHOTO_TEMPLATES = (
    "a photo of a {}", "a rendering of a {}", "a cropped photo of the {}", "the photo of a {}",
    "a photo of a clean {}", "a photo of a dirty {}", "a dark photo of the {}", "a photo of my {}",
    "a photo of the cool {}", "a close-up photo of a {}", "a bright photo of the {}", "a cropped photo of a {}",
    "a photo of the {}", "a good photo of the {}", "a photo of one {}", "a close-up photo of the {}",
    "a rendition of the {}", "a photo of the clean {}", "a rendition of a {}", "a photo of a nice {}",
    "a good photo of a {}", "a photo of the nice {}", "a photo of the small {}", "a photo of the weird {}",
    "a photo of the large {}", "a photo of a cool {}", "a photo of a small {}",
)
PROMPT_TEMPLATES: tuple[str, ...] = tuple(
    t.replace("a photo of", alt, 1) if t.startswith("a photo of") else t
    for alt in ("a photo of", "an illustration of", "a depiction of") for t in _PHOTO_TEMPLATES)
GENERATION_TEMPLATE = PROMPT_TEMPLATES[0]  # "a photo of a {}": the fixed prompt at generation


def template_prompt(tokens: str, rng: np.random.Generator | None = None) -> str:
    """`tokens` (the placeholder string) in a template drawn from `rng`; the generation template if None."""
    if rng is None:
        return GENERATION_TEMPLATE.format(tokens)
    return PROMPT_TEMPLATES[int(rng.integers(len(PROMPT_TEMPLATES)))].format(tokens)
