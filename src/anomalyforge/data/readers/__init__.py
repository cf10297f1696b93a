"""One reader per dataset layout family; `READERS` lists them in detection order.

A reader says whether a folder is one category in its layout (`is_category`, cheap: folder
names only) and turns such a folder into samples plus warnings (`read`). Detection tries the
most specific layouts first and the generic folder layout last.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

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


def _readers() -> list[Reader]:
    from anomalyforge.data.readers import btad, folder, magnetic_tile, mvtec, mvtec3d, visa

    return [mvtec3d.READER, mvtec.LOCO_READER, mvtec.READER, btad.READER, visa.READER,
            magnetic_tile.READER, folder.READER]


READERS: list[Reader] = _readers()
FORMATS: dict[str, Reader] = {r.name: r for r in READERS}
ALIASES = {"mvtec_ad": "mvtec", "loco": "mvtec_loco", "mvtec_3d": "mvtec3d", "mvtec3d_ad": "mvtec3d",
           "generic": "folder", "mtd": "magnetic_tile", "magnetic-tile": "magnetic_tile"}
