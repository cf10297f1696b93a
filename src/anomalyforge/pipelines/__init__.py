"""anomalyforge.pipelines: end-to-end jobs composed from the layers below.

`benchmark.run_benchmark` (generate, train, evaluate once on the held-out real defects, report),
`seeds.run_benchmark_seeds` (the same over several seeds, paired differences), `fewshot.run_fewshot_benchmark`
(few-shot unsupervised detection with and without generated good images).
"""
