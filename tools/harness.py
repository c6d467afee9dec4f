"""Real worker processes, the simulator's control API and polling, for tests, benchmarks and fault reports."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from celery import current_app

from routing import deployed
from routing.broker import broker_connection, queue_states
from routing.declare import declare_topology

ROOT = Path(__file__).resolve().parent.parent


def procfile() -> dict[str, str]:
    """The Procfile's processes: name -> command."""
    entries = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, command = line.split(":", 1)
            entries[name.strip()] = command.strip()
    return entries


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


@contextlib.contextmanager
def within(seconds: float, what: str) -> Iterator[None]:
    """Fail the test if the block has not finished `seconds` after it began: a bounded wait on one call.

    Interrupts the call with SIGALRM (the main thread only) rather than timing it after the fact:
    a call that would hang fails at its bound. pytest-timeout's own alarm is put back afterwards.
    """
    def expired(signum: int, frame: Any) -> None:
        raise AssertionError(f"{what} did not happen within {seconds} s")

    previous_handler = signal.signal(signal.SIGALRM, expired)
    previous_delay, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    started = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_handler)
        if previous_delay:
            signal.setitimer(signal.ITIMER_REAL, max(previous_delay - (time.monotonic() - started), 0.001))


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


def broker_ctl(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    """rabbitmqctl against the broker the tests run on: the machine's own, or the one TEST_BROKER_CTL names
    (a test broker in a container, tools/rabbit_containers.py)."""
    prefix = shlex.split(os.environ.get("TEST_BROKER_CTL") or "rabbitmqctl")
    return subprocess.run([*prefix, "-q", *args], capture_output=True, text=True, timeout=timeout, check=check)


def vhost_url(vhost: str) -> str:
    """The URL of `vhost` on the broker the tests run on (its first node)."""
    first = urllib.parse.urlsplit(str(current_app.conf.broker_url).split(";")[0])
    return f"{first.scheme}://{first.netloc}/{urllib.parse.quote(vhost, safe='')}"


@contextlib.contextmanager
def own_vhost(name: str) -> Iterator[str]:
    """A fresh vhost of the test broker, the guest user allowed in it; deleted afterwards. Yields its URL."""
    broker_ctl("delete_vhost", name, check=False)
    broker_ctl("add_vhost", name)
    try:
        broker_ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield vhost_url(name)
    finally:
        broker_ctl("delete_vhost", name, check=False)


@contextlib.contextmanager
def own_database(name: str) -> Iterator[str]:
    """An empty PostgreSQL database on the test server, dropped afterwards (connections and all). Yields its URL."""
    import psycopg2
    from django.conf import settings

    server = settings.DATABASES["default"]
    admin = psycopg2.connect(host=server["HOST"], port=server["PORT"], user=server["USER"],
                             password=server["PASSWORD"], dbname="postgres")
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            cursor.execute(f'CREATE DATABASE "{name}"')
        credentials = urllib.parse.quote(server["USER"], safe="")
        if server["PASSWORD"]:
            credentials += ":" + urllib.parse.quote(server["PASSWORD"], safe="")
        yield f"postgres://{credentials}@{server['HOST']}:{server['PORT']}/{name}"
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def logged_since(log: Path, offset: int) -> str:
    """What a process wrote to its log after `offset` bytes (its size when the test began to watch)."""
    with log.open("rb") as file:
        file.seek(offset)
        return file.read().decode(errors="replace")


def post_json(url: str, headers: dict[str, str] | None = None, timeout: float = 15) -> tuple[int, dict]:
    """POST with an empty body; the status and the JSON answer, errors included."""
    request = urllib.request.Request(url, data=b"", method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def purge_lanes() -> None:
    """Declare the topology and drop every message in the lanes and the dead-letter queue."""
    with broker_connection(write=True) as conn:
        channel = conn.default_channel
        declare_topology(channel)
        for queue in deployed().all_queues:
            channel.queue_purge(queue.name)


def run_summary(run_id: int) -> dict | None:
    """A refresh run's summary, or None while the database is unreachable (fault scenarios)."""
    from django.db import OperationalError, connection

    from weather.models import RefreshRun

    try:
        return RefreshRun.objects.get(pk=run_id).summary()
    except OperationalError:
        connection.close()  # reconnect on the next query
        return None


def wait_for_run(run_id: int, timeout: float = 180, what: str = "the refresh to finish") -> dict:
    """Wait until every batch of a refresh run is done or failed; its summary."""
    return wait_for(lambda: (summary := run_summary(run_id)) and summary["finished"] and summary, timeout=timeout,
                    interval=0.3, what=what)


def queue_depth(name: str) -> int:
    """Messages ready in a queue, read from RabbitMQ."""
    return queue_states([name])[name].messages


# kombu's native delayed delivery: a countdown on a quorum lane waits in celery_delayed_<level> queues.
DELAYED_QUEUE_PREFIX = "celery_delayed_"


def _messages_per_queue() -> dict[str, int]:
    """Every queue of the test vhost with its messages, ready or delivered and not yet acknowledged."""
    with current_app.connection_for_read() as connection:  # parsed by kombu; nothing is connected
        vhost = connection.virtual_host
    listed = broker_ctl("list_queues", "-p", vhost, "name", "messages").stdout.split()
    # The listing opens with its column names ("name messages"): only rows with a count.
    return {name: int(count) for name, count in zip(listed[::2], listed[1::2], strict=False) if count.isdigit()}


def in_flight(name: str) -> int:
    """Messages in a queue, ready or delivered and not yet acknowledged (a countdown a worker holds included)."""
    return _messages_per_queue().get(name, 0)


def delayed() -> int:
    """Messages RabbitMQ holds for their countdown before they reach a lane (Celery's delayed delivery)."""
    return sum(count for name, count in _messages_per_queue().items() if name.startswith(DELAYED_QUEUE_PREFIX))


def queue_consumers(name: str) -> int:
    """Consumers attached to a queue, read from RabbitMQ."""
    return queue_states([name])[name].consumers


class WorkerPools:
    """Real `python -m workers run <pool>` processes, started and stopped on demand."""

    def __init__(self, env: dict[str, str], log_dir: Path, slots: dict[str, int] | None = None,
                 consumers: Callable[[str], int] | None = None) -> None:
        self.env = env
        # How to count a queue's consumers on the broker these pools use (default: this process's broker).
        self.consumers = consumers or queue_consumers
        # Concurrency per pool when a start names none (else the registry's default).
        self.slots = dict(slots or {})
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen] = {}
        self.queues: dict[str, list[str]] = {}

    def start(self, pool: str, extra_env: dict[str, str] | None = None, **overrides: object) -> subprocess.Popen:
        """Start one pool (through the launcher) and wait until it consumes its queue.

        `overrides` become WORKER_<POOL>_<SETTING> variables; `extra_env` is passed as is.
        """
        self.start_all([pool], extra_env, **overrides)
        return self.processes[pool]

    def start_all(self, pools: Iterable[str], extra_env: dict[str, str] | None = None, **overrides: object) -> None:
        """Start several pools at once, each as `start` would, and wait until every one consumes its queue.

        Their imports and connections overlap: three pools come up in about the time of one.
        """
        pools = list(pools)
        self._stop_together(pools)  # the ones running, replaced together
        launched = []
        for pool in pools:
            settings = dict(overrides)
            if pool in self.slots:
                settings.setdefault("concurrency", self.slots[pool])
            env = {**self.env, **(extra_env or {}),
                   **{f"WORKER_{pool.upper()}_{k.upper()}": str(v) for k, v in settings.items()}}
            argv = [sys.executable, "-m", "workers", "run", pool, "--loglevel", "INFO"]
            launched.append(self._launch(pool, argv, env, queues=[pool]))
        for name in launched:
            self._wait_consuming(name)

    def start_command(self, name: str, argv: list[str], env: dict[str, str], queues: list[str]) -> subprocess.Popen:
        """Start any worker command under `name` and wait until it consumes `queues`."""
        self._wait_consuming(self._launch(name, argv, env, queues))
        return self.processes[name]

    def _launch(self, name: str, argv: list[str], env: dict[str, str], queues: list[str]) -> str:
        self.stop(name)
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        # Its own session, so kill() can take the whole pool (main process and children) at once.
        self.processes[name] = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                                start_new_session=True)
        self.queues[name] = queues
        return name

    def _wait_consuming(self, name: str) -> None:
        process, queues = self.processes[name], self.queues[name]
        wait_for(lambda: process.poll() is not None or all(self.consumers(q) > 0 for q in queues),
                 timeout=60, what=f"{name} to consume {queues}")
        if process.poll() is not None:
            raise AssertionError(f"{name} exited: see {self.log_dir / (name + '.log')}")

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        """Stop one worker and wait until the broker sees no consumer left on its queues."""
        self._stop_together([name], sig, timeout)

    def _stop_together(self, names: list[str], sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        """Signal every named worker first, then wait for each: their warm shutdowns overlap."""
        stopping = []
        for name in names:
            process = self.processes.pop(name, None)
            queues = self.queues.pop(name, [])
            if process is not None and process.poll() is None:
                process.send_signal(sig)
                stopping.append((name, process, queues))
        deadline = time.monotonic() + timeout
        failures = []
        for name, process, queues in stopping:
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)  # the main process and its prefork children
                process.wait(timeout=10)
            try:
                wait_for(lambda q=queues: all(self.consumers(queue) == 0 for queue in q), timeout=30,
                         what=f"{name} to detach")
            except AssertionError as error:
                failures.append(error)
                # Whatever is left of it (prefork children) would consume the next test's messages.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
        if failures:
            raise failures[0]

    def kill(self, name: str) -> None:
        """SIGKILL a whole worker, main process and children, as a crash or OOM kill would."""
        process = self.processes.pop(name)
        self.queues.pop(name, None)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def kill_children(self, name: str) -> list[int]:
        """SIGKILL the prefork children of a worker (the parent replaces them)."""
        pids = self.child_pids(name)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return pids

    def alive(self, name: str) -> bool:
        """The worker's main process is still running."""
        process = self.processes.get(name)
        return process is not None and process.poll() is None

    def stop_all(self) -> None:
        """Stop every pool this object started, together; each one is gone afterwards even if another failed to
        detach."""
        self._stop_together(list(self.processes))

    def child_pids(self, pool: str) -> list[int]:
        """PIDs of the prefork children of a running pool."""
        parent = self.processes[pool].pid
        output = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True).stdout
        return [int(pid) for pid in output.split()]


def worker_env(database_name: str, simulator_url: str) -> dict[str, str]:
    """Environment for worker processes: the test database and the simulator."""
    # DATABASE_URL would win over the test database named here (server_config/backing.py).
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("WORKER_") and key != "DATABASE_URL"}
    env.update({
        "POSTGRES_DB": database_name,
        "WEATHER_API_URL": simulator_url,
        "WEATHER_RETRY_BASE_SECONDS": "0.2",
        "WEATHER_READ_TIMEOUT": "1.5",
        # Quota is lifted unless a test restarts a pool with limits of its own.
        "WEATHER_QUOTA_PER_MINUTE": "0",
        "WEATHER_QUOTA_PER_HOUR": "0",
        "WEATHER_QUOTA_PER_DAY": "0",
        "PYTHONUNBUFFERED": "1",
    })
    return env
