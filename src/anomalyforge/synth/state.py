"""The metadata file of a fitted generator's state folder, shared by the diffusion generators.

`write_state_meta` writes it atomically; `read_state_meta` reads it back and refuses, with one line
naming the file, a state of another method or category, or one fitted with settings that change
the saved weights' meaning or shapes (`must_match`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from anomalyforge.atomic import write_json_atomic
from anomalyforge.errors import ConfigError


def write_state_meta(path: Path, meta: dict[str, Any]) -> None:
    """Write `meta` as JSON to `path` via a temporary file and a rename."""
    write_json_atomic(path, meta)


def read_state_meta(path: Path, method: str, category: str, config: Any, must_match: Iterable[str]) -> dict:
    """The metadata at `path`, checked against the generator that loads it (see module doc)."""
    if not path.is_file():
        raise ConfigError(f"{path}: no {method} state here (run fit first)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: unreadable state ({exc.__class__.__name__})") from None
    if meta.get("method") != method:
        raise ConfigError(f"{path}: state of method {meta.get('method')!r}, not {method!r}")
    if meta.get("category") != category:
        raise ConfigError(f"{path}: state was fitted on category {meta.get('category')!r}, not {category!r}")
    saved = meta.get("config", {})
    now = dataclasses.asdict(config)
    for key in must_match:
        if key in saved and saved[key] != now[key]:
            raise ConfigError(f"{path}: fitted with {key}={saved[key]!r} but the config says {now[key]!r}")
    return meta
