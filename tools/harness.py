"""Shared helpers for the tests: polling, the simulator's control API, worker processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from routing.broker import queue_state
from server_config.celery import app

ROOT = Path(__file__).resolve().parent.parent


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1, what: str = "") -> Any:
    """Poll until `predicate` returns something truthy; fail the test with `what` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


class Simulator:
    """Test-side handle on the simulator's control endpoints."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.base = url.rsplit("/v1/", 1)[0]

    def _post(self, path: str, body: dict) -> dict:
        request = urllib.request.Request(
            self.base + path, data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.load(response)

    def stats(self) -> dict:
        """Requests, locations and faults served since the last reset."""
        with urllib.request.urlopen(self.base + "/__sim/stats", timeout=5) as response:
            return json.load(response)

    def reset(self) -> None:
        """Zero counters and faults."""
        self._post("/__sim/reset", {})

    def configure(self, **settings: float) -> None:
        """Set latency or fault rates."""
        self._post("/__sim/config", settings)

    def script(self, *faults: str) -> None:
        """Force the answers of the next requests, in order."""
        self._post("/__sim/script", {"faults": list(faults)})


def queue_depth(name: str) -> int:
    """Messages ready in a queue, read from RabbitMQ."""
    with app.connection_for_read() as connection:
        return queue_state(connection, name).messages


def queue_consumers(name: str) -> int:
    """Consumers attached to a queue, read from RabbitMQ."""
    with app.connection_for_read() as connection:
        return queue_state(connection, name).consumers


class WorkerPools:
    """Real `python -m workers run <pool>` processes, started and stopped on demand."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, pool: str, **overrides: str) -> subprocess.Popen:
        """Start one pool (through the launcher) and wait until it consumes its queue."""
        self.stop(pool)
        env = {**self.env, **{f"WORKER_{pool.upper()}_{k.upper()}": str(v) for k, v in overrides.items()}}
        log = open(self.log_dir / f"{pool}.log", "ab")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            [sys.executable, "-m", "workers", "run", pool, "--loglevel", "INFO"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        self.processes[pool] = process
        wait_for(lambda: process.poll() is not None or queue_consumers(pool) > 0, timeout=60,
                 what=f"pool {pool} to consume")
        if process.poll() is not None:
            raise AssertionError(f"pool {pool} exited: see {self.log_dir / (pool + '.log')}")
        return process

    def stop(self, pool: str, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        """Stop one pool and wait until the broker sees no consumer left."""
        process = self.processes.pop(pool, None)
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        wait_for(lambda: queue_consumers(pool) == 0, timeout=30, what=f"pool {pool} to detach")

    def stop_all(self) -> None:
        """Stop every pool this object started."""
        for pool in list(self.processes):
            self.stop(pool)

    def child_pids(self, pool: str) -> list[int]:
        """PIDs of the prefork children of a running pool."""
        parent = self.processes[pool].pid
        output = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True).stdout
        return [int(pid) for pid in output.split()]


def worker_env(database_name: str, simulator_url: str) -> dict[str, str]:
    """Environment for worker processes: the test database and the simulator."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("WORKER_")}
    env.update({
        "POSTGRES_DB": database_name,
        "WEATHER_API_URL": simulator_url,
        "WEATHER_RETRY_BASE_SECONDS": "0.2",
        "WEATHER_READ_TIMEOUT": "1.5",
        "PYTHONUNBUFFERED": "1",
    })
    return env
