"""`DIR/predictions.csv` and `DIR/predictions.jsonl`: one row per predicted image (same columns).

Columns: path (the input image), status ("ok" | "error"), score, verdict ("defect" | "good"),
image_threshold, defect_type, type_prob, mask, overlay (PNGs relative to DIR), width, height (of the
input), model (the model's identity: its weights' hash), error (the one-line reason of an error row).
Both files are rewritten atomically after every batch, so a reader (or a resumed run) never sees
a half-written row; the .jsonl (schema_version per row, 1) is the one a resume reads back.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from anomalyforge.atomic import write_text_atomic
from anomalyforge.errors import DataError
from anomalyforge.formats.schema import dump, parse

PREDICTIONS_CSV = "predictions.csv"
PREDICTIONS_JSONL = "predictions.jsonl"
SCHEMA_VERSION = 1


@dataclass
class PredictionRow:
    path: str
    status: str = "ok"
    score: float | None = None
    verdict: str | None = None
    image_threshold: float | None = None
    defect_type: str | None = None
    type_prob: float | None = None
    mask: str | None = None
    overlay: str | None = None
    width: int | None = None
    height: int | None = None
    model: str = ""
    error: str | None = None
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)


COLUMNS = [f.name for f in fields(PredictionRow) if f.name not in ("extra", "schema_version")]


def read_rows(folder: str | Path) -> list[PredictionRow]:
    """The rows of `folder/predictions.jsonl` ([] when absent); DataError naming the file and line."""
    path = Path(folder) / PREDICTIONS_JSONL
    if not path.is_file():
        return []
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            raise DataError(f"{path}:{i}", "not a JSON line") from None
        rows.append(parse(PredictionRow, doc, f"{path}:{i}", SCHEMA_VERSION))
    return rows


def write_rows(folder: str | Path, rows: list[PredictionRow]) -> None:
    """Both files for `rows`, each written atomically."""
    folder = Path(folder)
    docs = [dump(r) for r in rows]
    write_text_atomic(folder / PREDICTIONS_JSONL, "".join(json.dumps(d) + "\n" for d in docs))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for d in docs:
        w.writerow({k: "" if d.get(k) is None else d[k] for k in COLUMNS})
    write_text_atomic(folder / PREDICTIONS_CSV, buf.getvalue())


__all__ = ["COLUMNS", "PREDICTIONS_CSV", "PREDICTIONS_JSONL", "PredictionRow", "read_rows", "write_rows"]
