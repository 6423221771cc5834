"""Serving fixtures: a tiny simulated marketplace with a CTR and a PCCVR run trained on it (once per
session), its catalog, apps over them, and real ``redis-server`` processes on free loopback ports."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from adsformer.experiments.runs import train_run
from adsformer.run.config import load_experiment
from adsformer.serving.build import build_service
from adsformer.serving.catalog import Catalog
from adsformer.serving.settings import ServingSettings
from adsformer.simulator import SimulatorConfig, simulate

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
API_KEY = "test-key"


@pytest.fixture(scope="session")
def sim_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("serving") / "data"
    simulate(SimulatorConfig.preset("tiny").with_overrides(images=False), out)
    return out


def _train(data: Path, task: str, out: Path) -> Path:
    cfg = load_experiment(CONFIGS / f"{task}_test.yaml", ["threads=1"], extra={"task": task})
    train_run(data, cfg, out, show_progress=False)
    return out


@pytest.fixture(scope="session")
def ctr_run(sim_data, tmp_path_factory) -> Path:
    return _train(sim_data, "ctr", tmp_path_factory.mktemp("runs") / "ctr")


@pytest.fixture(scope="session")
def pccvr_run(sim_data, tmp_path_factory) -> Path:
    return _train(sim_data, "pccvr", tmp_path_factory.mktemp("runs") / "pccvr")


@pytest.fixture(scope="session")
def catalog(sim_data) -> Catalog:
    return Catalog.load(sim_data)


@pytest.fixture
def make_settings(ctr_run, pccvr_run, sim_data) -> Callable[..., ServingSettings]:
    def make(**overrides) -> ServingSettings:
        base = {
            "run": ctr_run,
            "pccvr_run": pccvr_run,
            "catalog": sim_data,
            "api_keys": [API_KEY],
            "cache_ttl_s": 0,
        }
        return ServingSettings(**{**base, **overrides})

    return make


@pytest.fixture
def make_service(make_settings, catalog):
    def make(**overrides):
        return build_service(make_settings(**overrides), catalog=catalog)

    return make


# -- redis ------------------------------------------------------------------------------------------------
@dataclass
class RedisServer:
    """A ``redis-server`` on a loopback port. With a ``directory`` it persists as docs/serving.md runs it: an
    append-only file there, fsynced every second (no RDB snapshots); without one it keeps nothing.
    :meth:`kill` then :meth:`start` restart it on the same port and directory."""

    port: int
    directory: Path | None = None
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.process is not None, "the server is not started"
        return self.process.pid

    def command(self) -> list[str]:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.skip(
                "redis-server is not installed (apt-get install redis-server); real-Redis tests skipped"
            )
        cmd = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        if self.directory is None:
            return [*cmd, "--appendonly", "no"]
        return [*cmd, "--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(self.directory)]

    def start(self, timeout_s: float = 10.0) -> None:
        """Start it and wait until it answers (after loading its append-only file)."""
        self.process = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:  # not listening yet, or still loading (BusyLoadingError)
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final write (a crash)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(directory: Path | None) -> RedisServer:
    """A throw-away redis-server on a free loopback port; persistent (AOF) in ``directory`` when given."""
    server = RedisServer(_free_port(), directory)
    server.start()
    return server


@pytest.fixture
def redis_server(tmp_path) -> Iterator[RedisServer]:
    """A fresh server per test (tests may stop it), with its append-only file in the test's tmp dir."""
    directory = tmp_path / "redis"
    directory.mkdir()
    server = start_redis(directory)
    yield server
    server.stop()
