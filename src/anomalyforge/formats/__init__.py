"""anomalyforge.formats: the files that pass between stages, one owner module per format.

`manifest` (a run's `manifest.jsonl` of generated pairs and its `run.json`). Every reader and
writer of these files goes through these modules.
"""
