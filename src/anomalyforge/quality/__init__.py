"""anomalyforge.quality: GAA's data-quality tools.

- `features`: region descriptors (masked deep features, LAB statistics, LBP texture).
- `cluster`: adaptive multi-round anomaly clustering into sub-types ``<type>@<k>``
  (`cluster_category`, `apply_subtypes`, `plan_subtypes` for `generate_run(subtypes=...)`).
- `ars`: SimpleNet-style discriminator and the Anomaly Region Score.
- `filter`: `filter_run` scores a run's pairs by ARS and rejects the worst per defect type.
Modules are imported on use (they pull in torch / scikit-learn).
"""
