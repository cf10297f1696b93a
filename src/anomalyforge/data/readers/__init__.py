"""One reader per dataset layout family; `READERS` lists them in detection order.

A reader (`base.Reader`) says whether a folder is one category in its layout (`is_category`, cheap:
folder names only) and turns such a folder into samples plus warnings (`read`). Detection tries
the most specific layouts first and the generic folder layout last.
"""

from __future__ import annotations

from anomalyforge.data.readers import btad, folder, magnetic_tile, mvtec, mvtec3d, visa
from anomalyforge.data.readers.base import Reader, ReadResult

__all__ = ["ALIASES", "FORMATS", "READERS", "ReadResult", "Reader"]

READERS: list[Reader] = [mvtec3d.READER, mvtec.LOCO_READER, mvtec.READER, btad.READER, visa.READER,
                         magnetic_tile.READER, folder.READER]
FORMATS: dict[str, Reader] = {r.name: r for r in READERS}
ALIASES = {"mvtec_ad": "mvtec", "loco": "mvtec_loco", "mvtec_3d": "mvtec3d", "mvtec3d_ad": "mvtec3d",
           "generic": "folder", "mtd": "magnetic_tile", "magnetic-tile": "magnetic_tile"}
