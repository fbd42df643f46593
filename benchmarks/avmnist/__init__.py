"""AV-MNIST benchmark: MultiBench's models expressed in polyfuse, timed and scored on real data.

    python -m benchmarks.avmnist [--variants avmnist,avmnist-hard] [--models ...] [--seeds 3] [--epochs 2]

Each run trains in a fresh process (so its peak resident memory is its own) and appends a row to
benchmarks/results/avmnist.csv; benchmarks/results/avmnist.md is rewritten from that file.
Needs the MNIST and FSDD sources (``$POLYFUSE_SHARED_DATA`` or ../shared/data).
"""
