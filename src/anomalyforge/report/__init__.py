"""anomalyforge.report: what people look at — HTML reports, contact sheets, figures.

`html.write_report(bench_dir)` (a finished benchmark), `preview` (a run's contact sheet),
`seeds` / `fewshot` (the studies' summaries), `figures` (plots and heat maps on a shared scale).
"""
