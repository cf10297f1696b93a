"""Natural ordering of file ids, so `exp1_num_10181` < `exp1_num_106151` and `9` < `10`.

The few-shot protocol takes the *lowest-numbered* defect images for training; publishers number
files without zero padding (Magnetic Tile) or with it (MVTec), so plain string order is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TypeVar

_CHUNKS = re.compile(r"(\d+)")

T = TypeVar("T")


def natural_key(text: str) -> tuple:
    """Sort key comparing digit runs as numbers and the rest case-insensitively.

    Ties (e.g. "007" vs "7") are broken by the original string so the order is total.
    """
    parts = []
    for i, chunk in enumerate(_CHUNKS.split(text)):
        if i % 2:
            parts.append((0, int(chunk), ""))
        elif chunk:
            parts.append((1, 0, chunk.lower()))
    return (tuple(parts), text)


def natural_sorted(items: Iterable[T], key=str) -> list[T]:
    """`items` sorted by `natural_key(key(item))`."""
    return sorted(items, key=lambda item: natural_key(key(item)))
