"""Time-series benchmark: python -m benchmarks.timeseries."""
