"""The reader interface: one `Reader` per dataset layout family.

A reader says whether a folder is one category in its layout (`is_category`, cheap: folder
names only) and turns such a folder into samples plus warnings (`read`). Detection tries the
most specific layouts first and the generic folder layout last.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from anomalyforge.data.types import Sample

ReadResult = tuple[list[Sample], list[str]]


@dataclass(frozen=True)
class Reader:
    """A dataset layout: its name, how to recognise one category folder, and how to read it."""

    name: str
    description: str
    is_category: Callable[[Path], bool]
    read: Callable[[Path, str], ReadResult]  # (category folder, category name) -> samples, warnings
    category_name: Callable[[Path], str] = lambda path: path.name
