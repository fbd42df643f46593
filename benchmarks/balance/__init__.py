"""Modality balancing benchmarks (issue #16): the tables they use and the scripts that measure them."""
