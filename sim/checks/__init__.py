"""What watches a run without changing it: the per-second sampler behind timeseries.csv
(metrics), and the replication probe and checker that judge keyval convergence (replication)."""
