"""A benchmark's `results.json`: the header of the benchmark and one entry per method.

Schema (version 2; a file without `schema_version` is version 1 and still reads):

    schema_version  int      2
    category        str      the benchmarked category
    data            str      absolute dataset root
    profile         str      profile name
    seed            int
    config          object   the profile's settings (free-form)
    backbone        object|null  the pretrained weights' identity {name, weights "imagenet"|"tab", sha256, ...}
    split           object   train/test counts per defect type (free-form)
    created, version  str
    selection       object   (`--profile auto`) the training-fold choice, `pipelines.select`
    size_choice     object   (a profile with `size_ladder`) the input size chosen from the few-shot
                             masks, `inspect.resolution.SizeChoice`
    methods         {name: MethodResult}

    MethodResult: status str ("done", ...), kind str ("synthetic" | "baseline"), model str,
    localization / classification / generation  object|null (free-form figures; classification
    has `input` "image"|"region"|"ensemble" and `choice`, `inspect.classifier_choice`, when cls_input
    chose, and then `candidates_test` {candidate: test accuracy}: every candidate the choice built,
    scored on the test split AFTER the choice, which never reads it),
    timings object (seconds: generate_s, quality_s, train_s -- split in train_parts_s {localizer_s,
    classifier_s, thresholds_s (the k-fold refits), classifier_choice_s} -- eval_s, total_s),
    n_pairs int, run str|null (the generated run, relative to the benchmark folder or absolute),
    artifacts object (files under the benchmark folder: maps, quality), peak_rss_mb number|null,
    display_scale {lo, hi, ...}|null (the heat-map scale: median and 99.9th percentile of the model's
    pixel scores on held-out good training images; never set from test images),
    decisions object|null (synthetic methods: the verdicts at the delivered model's thresholds, chosen
    on training data -- image_threshold, pixel_threshold, image_accuracy, false_alarm_rate, miss_rate,
    pixel_precision / recall / f1, type_accuracy, how the thresholds were chosen).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

from anomalyforge.errors import DataError
from anomalyforge.formats.schema import Document

RESULTS_JSON = "results.json"
SCHEMA_VERSION = 2
IDENTITY_KEYS = ("category", "profile", "seed", "config")


@dataclass
class MethodResult:
    """One method's entry of results.json."""

    status: str = "done"
    kind: str = ""
    model: str = ""
    localization: dict[str, Any] | None = None
    classification: dict[str, Any] | None = None
    generation: dict[str, Any] | None = None
    timings: dict[str, Any] = field(default_factory=dict)
    n_pairs: int | None = None
    run: str | None = None
    artifacts: dict[str, Any] = field(default_factory=dict)
    peak_rss_mb: float | None = None
    display_scale: dict[str, Any] | None = None
    decisions: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class BenchmarkResults(Document):
    """The typed results.json of one benchmark folder."""

    FILE: ClassVar[str] = RESULTS_JSON
    VERSION: ClassVar[int] = SCHEMA_VERSION

    methods: dict[str, MethodResult]
    category: str = ""
    data: str = ""
    profile: str = ""
    seed: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    backbone: dict[str, Any] | None = None
    split: dict[str, Any] | None = None
    created: str = ""
    version: str = ""
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, doc: Any, where: str | Path | None = None) -> Self:
        if isinstance(doc, dict) and "methods" not in doc:
            raise DataError(where or RESULTS_JSON, "missing the 'methods' object")
        return super().from_dict(doc, where)

    @classmethod
    def read(cls, path: str | Path) -> BenchmarkResults:
        """A results.json file (or the one in a benchmark folder); DataError naming it on a mismatch."""
        path = cls.file_in(path)
        if not path.is_file():
            raise DataError(path, "no results.json: not a finished benchmark folder")
        return cls.read_file(path, "results")


def write_results(path: str | Path, doc: dict) -> dict:
    """Validate a results document built as a dict, write it atomically, and return it as written."""
    res = BenchmarkResults.from_dict({**doc, "schema_version": SCHEMA_VERSION}, path)
    res.write(path)
    return res.to_dict()


__all__ = ["IDENTITY_KEYS", "RESULTS_JSON", "SCHEMA_VERSION", "BenchmarkResults", "MethodResult", "write_results"]
