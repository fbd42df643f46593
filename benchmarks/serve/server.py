"""``polyfuse serve`` as a child process on 127.0.0.1 and a free port, for the time of a ``with``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from benchmarks.serve.load import LOCAL_HOST

OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


@dataclass
class ServerOptions:
    """The ``polyfuse serve`` options a benchmark row varies."""

    backend: str = "torch"  # torch or onnx
    max_batch: int = 32  # 1: batching off
    max_wait_ms: float = 5.0
    threads: int = 1  # torch / onnxruntime intra-op threads per process
    workers: int = 1

    def arguments(self) -> list[str]:
        return [
            *("--backend", self.backend, "--max-batch", str(self.max_batch)),
            *("--max-wait-ms", str(self.max_wait_ms), "--threads", str(self.threads)),
            *("--workers", str(self.workers)),
        ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOCAL_HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class Running:
    """A started server: its base URL and process id."""

    url: str
    pid: int

    def cpu_seconds(self) -> float:
        """User + system CPU seconds so far of the server and its worker processes (Linux only)."""
        return sum(_own_cpu_seconds(pid) for pid in _tree(self.pid))


def _tree(pid: int) -> list[int]:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return [pid] + [p for child in children for p in _tree(int(child))]


def _own_cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # from field 3, state
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime, in ticks


@contextmanager
def running_server(model_dir: Path, options: ServerOptions, startup_s: float = 300.0) -> Iterator[Running]:
    """Starts the server, yields it once ``/health`` answers, stops it afterwards."""
    port = free_port()
    command = [sys.executable, "-m", "polyfuse.cli", "serve", str(model_dir), "--host", LOCAL_HOST]
    command += ["--port", str(port), *options.arguments()]
    env = {**os.environ, **{k: os.environ.get(k, v) for k, v in OFFLINE.items()}}
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            url = f"http://{LOCAL_HOST}:{port}"
            _wait_healthy(url, process, startup_s, log)
            yield Running(url, process.pid)
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_healthy(url: str, process: subprocess.Popen[bytes], startup_s: float, log: IO[bytes]) -> None:
    import httpx

    deadline = time.monotonic() + startup_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode}:\n{_tail(log)}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"no answer from {url}/health within {startup_s:.0f} s:\n{_tail(log)}")


def _tail(log: IO[bytes], size: int = 4000) -> str:
    log.seek(0)
    return log.read()[-size:].decode(errors="replace")
