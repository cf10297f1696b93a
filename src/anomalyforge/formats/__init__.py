"""anomalyforge.formats: the files that pass between stages, one owner module per format.

`run` (a run's `run.json`: `RunInfo`), `manifest` (its `manifest.jsonl`: `PairRecord`),
`results` (a benchmark's `results.json`: `BenchmarkResults`), `quality` (a run's `quality.json`:
`QualityScores`), all built on `schema` (typed JSON, one-line errors naming the file, and the one
resume check `refuse_other_job`). Every reader and writer of these files goes through them.
"""
