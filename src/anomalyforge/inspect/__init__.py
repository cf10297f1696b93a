"""anomalyforge.inspect: the downstream inspection models, trained on generated pairs.

Modules: `profiles` (smoke / cpu / paper settings), `models` (feature_head, lite_unet,
draem_unet), `train` (leak-free training on generated pairs), `classify` (defect-type
classifier), `patchcore` (no-synthesis baseline), `evaluate` (the one place the test split is
read), `pairs` (generated pairs as arrays), `anomalib_detectors` (anomalib's PatchCore, PaDiM,
CFlow, FastFlow, STFPM on the offline backbone), `anomalib_data` (a run as anomalib data). The
benchmark that runs them lives in `anomalyforge.pipelines.benchmark`.
"""
