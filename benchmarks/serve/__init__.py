"""Load benchmark of ``polyfuse serve``: micro-batching on / off, torch / onnx backend.

    python -m benchmarks.serve [--model runs/digits-av] [--clients 16] [--requests 2000] [--seconds 30]

Each row starts its own ``polyfuse serve`` on 127.0.0.1, warms it up, runs a closed-loop load of
real multipart requests (the model's test rows) and stops it; results go to
benchmarks/results/serve.csv and serve.md. The demo model is trained first when runs/digits-av is
missing; the onnx rows export it (``polyfuse export``) when its model.onnx is missing or stale.
"""
