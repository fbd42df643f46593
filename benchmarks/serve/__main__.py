"""Load-test ``polyfuse serve``: batching on / off x torch / onnx; writes serve.csv and serve.md."""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.serve.load import Payload, mean_batch, request_payloads, run_load
from benchmarks.serve.server import OFFLINE, ServerOptions, running_server

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
DEMO_MODEL = ROOT / "runs" / "digits-av"  # where `make demo` saves it
TARGET_P99_MS, TARGET_RATIO = 50.0, 3.0
# Server intra-op threads, each measured: on 2 cores the load generator, the event loop and the model
# thread already share the CPU, so whether a second torch thread pays is a measurement, not a guess.
DEFAULT_THREADS = "1,2"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=DEMO_MODEL, help="trained like `make demo` if absent")
    parser.add_argument("--backends", default="torch,onnx")
    parser.add_argument("--clients", type=int, default=16, help="concurrent closed-loop clients")
    parser.add_argument("--requests", type=int, default=2000, help="per row (or --seconds)")
    parser.add_argument("--seconds", type=float, default=30.0, help="per row")
    parser.add_argument("--warmup-seconds", type=float, default=3.0)
    parser.add_argument("--max-batch", type=int, default=32, help="the batching-on rows' --max-batch")
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--threads", default=DEFAULT_THREADS, help="server --threads values, comma-separated")
    parser.add_argument("--workers", type=int, default=1, help="server --workers")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    model = ensure_model(args.model)
    payloads = request_payloads(model)
    rows = []
    for backend in args.backends.split(","):
        skip = onnx_problem(model) if backend == "onnx" else None
        for threads in (int(t) for t in args.threads.split(",")):
            for max_batch in (args.max_batch, 1):
                options = ServerOptions(backend, max_batch, args.max_wait_ms, threads, args.workers)
                row = skipped(options, skip) if skip else measure(model, payloads, options, args)
                rows.append(row)
                print(json.dumps(row), flush=True)
                write_results(pd.DataFrame(rows), args, model, len(payloads))


def ensure_model(model: Path) -> Path:
    """The model folder; the demo model is trained first (as `make demo` does) when it is absent."""
    if (model / "config.json").is_file():
        return model
    if model.resolve() != DEMO_MODEL:
        raise SystemExit(f"{model}: no saved model there (omit --model to train the demo model)")
    print(f"training the demo model into {model} (polyfuse fit --out {model}) ...", flush=True)
    command = [sys.executable, "-m", "polyfuse.cli", "fit", "--out", str(model)]
    subprocess.run(command, check=True, env={**OFFLINE, **os.environ})
    return model


def onnx_problem(model: Path) -> str | None:
    """Why the onnx rows cannot run (None: they can); exports the model when its export is missing
    or older than its weights."""
    onnx = model / "model.onnx"
    if onnx.is_file() and onnx.stat().st_mtime >= (model / "model.safetensors").stat().st_mtime:
        return None
    try:
        from polyfuse.export import OnnxModel  # noqa: F401  (what `serve --backend onnx` loads)
    except ImportError as exc:
        return f"skipped: no ONNX backend in this checkout yet (polyfuse.export: {exc})"
    command = [sys.executable, "-m", "polyfuse.cli", "export", str(model)]
    print(f"exporting: {shlex.join(command[2:])} ...", flush=True)
    done = subprocess.run(command, capture_output=True, text=True, env={**OFFLINE, **os.environ})
    if done.returncode != 0 or not onnx.is_file():
        lines = [line.strip("│╭╰─╮╯ ") for line in (done.stdout + done.stderr).splitlines()]
        lines = [line for line in lines if line]
        errors = [i for i, line in enumerate(lines) if "Error" in line.split(" ", 1)[0]]  # "SomeError: why"
        why = " ".join(lines[errors[-1] :]) if errors else (lines or [f"exit status {done.returncode}"])[-1]
        return f"skipped: `polyfuse export {model}` failed ({why[:200]})"
    return None


def measure(model: Path, payloads: list[Payload], options: ServerOptions, args: Any) -> dict[str, Any]:
    import httpx

    with running_server(model, options) as server:
        predict = f"{server.url}/predict"
        warm = {"max_requests": 50 * args.clients, "max_seconds": args.warmup_seconds}
        run_load(predict, payloads, clients=args.clients, **warm)  # one-off costs, not measured
        before = httpx.get(f"{server.url}/metrics").text
        client_cpu, server_cpu = time.process_time(), server.cpu_seconds()
        report = run_load(
            predict, payloads, clients=args.clients, max_requests=args.requests, max_seconds=args.seconds
        )
        client_cpu, server_cpu = time.process_time() - client_cpu, server.cpu_seconds() - server_cpu
        after = httpx.get(f"{server.url}/metrics").text
    per_request = 1000 / max(report.requests, 1)
    return {
        **_config(options),
        **report.as_dict(),
        "errors": sum(report.errors.values()),
        "errors_by_status": json.dumps(report.errors),
        "mean_batch": mean_batch(before, after),
        "server_cpu_ms": round(server_cpu * per_request, 2),  # per request, every thread and worker
        "client_cpu_ms": round(client_cpu * per_request, 2),  # the load generator's, per request
        "load_1min": round(os.getloadavg()[0], 2),
        "note": "",
    }


def skipped(options: ServerOptions, note: str) -> dict[str, Any]:
    return {**_config(options), "note": note}


def _config(options: ServerOptions) -> dict[str, Any]:
    return {
        "backend": options.backend,
        "batching": "on" if options.max_batch > 1 else "off",
        "max_batch": options.max_batch,
        "max_wait_ms": options.max_wait_ms,
        "threads": options.threads,
        "workers": options.workers,
    }


def write_results(frame: pd.DataFrame, args: Any, model: Path, rows: int) -> None:
    from benchmarks.common import machine_line

    args.out.mkdir(parents=True, exist_ok=True)
    counts = {c: "Int64" for c in ("clients", "requests", "ok", "errors") if c in frame}  # blank if skipped
    frame.astype(counts).to_csv(args.out / "serve.csv", index=False)
    command = "python -m benchmarks.serve " + shlex.join(sys.argv[1:])
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# polyfuse serve under load",
        "",
        f"Machine: {machine_line()}.",
        f"Run: {now}. Command: `{command.strip()}` (rows: serve.csv).",
        f"Model: `{_shown(model)}` (the `make demo` model unless --model says otherwise); requests: "
        f"multipart POST /predict with the image (PNG), audio (WAV) and text of {rows} test rows, in turn.",
        f"Load: {args.clients} closed-loop clients (one httpx.AsyncClient in the benchmark's process, on "
        f"the same machine as the server), at most {args.requests} requests or {args.seconds:g} s per row, "
        f"after {args.warmup_seconds:g} s of warm-up; one fresh `polyfuse serve` process per row.",
        "",
        f"Targets: p99 < {TARGET_P99_MS:g} ms at 16 concurrent clients; zero errors; throughput with "
        f"batching >= {TARGET_RATIO:g}x without.",
        "",
        "| backend | batching | max batch | threads | workers | requests | errors | req/s | p50 ms "
        "| p95 ms | p99 ms | mean batch | server CPU ms | client CPU ms | load | p99 target |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [_table_row(r) for r in frame.to_dict("records")]
    lines += ["", *_ratios(frame), "", *NOTES]
    (args.out / "serve.md").write_text("\n".join(lines) + "\n")


def _table_row(r: dict[str, Any]) -> str:
    cells = [r["backend"], r["batching"], r["max_batch"], r["threads"], r["workers"]]
    if r.get("note"):
        return "| " + " | ".join(str(c) for c in cells) + f" | {r['note']} |" + " |" * 10
    errors = f"{int(r['errors'])} {r['errors_by_status']}" if r["errors"] else "0"
    cells += [int(r["requests"]), errors, f"{r['throughput_rps']:.1f}", f"{r['p50_ms']:.1f}"]
    cells += [f"{r['p95_ms']:.1f}", f"{r['p99_ms']:.1f}", f"{r['mean_batch']:.1f}"]
    cells += [f"{r['server_cpu_ms']:.1f}", f"{r['client_cpu_ms']:.1f}", f"{r['load_1min']:.1f}"]
    cells.append("met" if r["p99_ms"] < TARGET_P99_MS and not r["errors"] else "missed")
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _ratios(frame: pd.DataFrame) -> list[str]:
    out = []
    for (backend, threads), rows in frame.groupby(["backend", "threads"], sort=False):
        rate = {r["batching"]: r.get("throughput_rps", math.nan) for r in rows.to_dict("records")}
        ratio = rate.get("on", math.nan) / rate.get("off", math.nan)
        where = f"{backend}, {threads} thread{'s' if threads > 1 else ''}"
        if math.isnan(ratio):
            out.append(f"- {where}: not measured")
        else:
            verdict = "met" if ratio >= TARGET_RATIO else "missed"
            out.append(f"- {where}: {ratio:.2f}x (target >= {TARGET_RATIO:g}x {verdict})")
    return ["Throughput with batching over without (req/s on / off):", "", *out]


def _shown(model: Path) -> str:
    return str(model.resolve().relative_to(ROOT)) if model.resolve().is_relative_to(ROOT) else str(model)


NOTES = [
    "Latency is client side (send to full answer) over the successful requests; req/s counts every",
    "request of the row over its wall time. errors: non-200 answers and failed connections, by status",
    "or exception. mean batch: rows per forward pass from the server's /metrics `polyfuse_batch_size`",
    "histogram over the measured requests (one worker's, when --workers > 1). server / client CPU ms:",
    "CPU time per request of the server process (all its threads and workers) and of the load",
    "generator, from /proc; their sum times req/s near 2,000 ms/s means both cores were busy.",
    "load: the 1-minute load average at the end of the row (about 2 = this benchmark alone on 2 cores).",
    "Closed loop: mean latency = clients / req/s (Little's law), so p99 < 50 ms at 16 clients needs",
    "more than 320 req/s, i.e. under ~3 ms of model-thread time per request (one thread per process).",
]


if __name__ == "__main__":
    main()
