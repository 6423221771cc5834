"""A fresh ``redis-server`` and ``adsformer serve`` on loopback ports, for the HTTP benchmarks
(``serving.py``, ``serving_flood.py``)::

    with loopback.service(run, catalog, api_key="bench", serve_args=["--threads", "1"]) as svc:
        httpx.post(f"{svc.base}/rank", json={"query": "mug"})

Redis keeps its files in a temporary directory (an append-only file fsynced every second with ``aof``, else
nothing on disk); the service answers ``/healthz`` before the block starts; both are stopped after it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Service:
    """A running service: its base URL, the server's and redis' processes."""

    base: str
    server: subprocess.Popen
    redis: subprocess.Popen


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(directory: str | Path, *, aof: bool, missing: str) -> tuple[subprocess.Popen, int]:
    """``redis-server`` on a free loopback port, its files in ``directory``; ``missing``: what to say when
    it is not installed."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit(f"redis-server not found: {missing}")
    port = free_port()
    persistence = ["--appendonly", "yes", "--appendfsync", "everysec"] if aof else ["--appendonly", "no"]
    proc = subprocess.Popen(
        [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(directory),
            "--save",
            "",
            *persistence,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, port


def serve_command(run: Path, catalog: Path, redis_port: int, port: int, api_key: str) -> list[str]:
    """``adsformer serve`` of ``run`` over ``catalog`` on ``port``, with the redis on ``redis_port``."""
    return [
        *(sys.executable, "-m", "adsformer.cli", "serve", "--run", str(run), "--catalog", str(catalog)),
        *("--redis-url", f"redis://127.0.0.1:{redis_port}/0", "--port", str(port), "--api-key", api_key),
    ]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    """Wait until ``url`` answers 200 (RuntimeError if ``proc`` exits first, TimeoutError after ``timeout``)."""
    import httpx  # the in-process parts of the benchmarks run without it

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stdout.read().decode() if proc.stdout else ''}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


@contextmanager
def service(
    run: Path,
    catalog: Path,
    *,
    api_key: str,
    serve_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    aof: bool = True,
    missing: str = "install it (apt-get install redis-server)",
) -> Iterator[Service]:
    """A fresh redis and ``adsformer serve`` (plus ``serve_args``, its environment updated with ``env``),
    answering ``/healthz``; both stopped on exit."""
    with tempfile.TemporaryDirectory() as directory:
        redis, redis_port = start_redis(directory, aof=aof, missing=missing)
        port = free_port()
        server = subprocess.Popen(
            [*serve_command(run, catalog, redis_port, port, api_key), *serve_args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_http(base + "/healthz", server)
            yield Service(base, server, redis)
        finally:
            server.terminate()
            server.wait(timeout=60)
            redis.terminate()
            redis.wait(timeout=30)
