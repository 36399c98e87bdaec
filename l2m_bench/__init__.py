"""The benchmark harness: two-view pose benchmarks (MegaDepth-1500, ScanNet-1500, scenes with ground truth) run
by pipelines/*.py: matching into a prediction cache, evaluation from the cache, results files, plots, pages."""
