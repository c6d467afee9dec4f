"""Test hosts: network namespaces on a bridge of the project's own, each running pool replicas through the launcher.

Each host is a namespace `fbh<n>` with one interface on the bridge `fbbr0`
(10.251.0.<10+n>/24) and its own host name (a UTS namespace per process), so a
pool replica there is `<pool>@fbh<n>` to Celery, doctor and the metrics. The
machine's RabbitMQ, PostgreSQL and the simulator listen on loopback only; the
hosts reach them through a relay on the bridge address (tools/relay.py), with a
RabbitMQ user of their own made for the run. Cutting a host off takes its
interface down inside its namespace. Everything made here (namespaces, bridge,
relay, processes, the user) is removed on exit, whatever happened.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .harness import ROOT, queue_consumers, wait_for

BRIDGE = "fbbr0"
SUBNET = "10.251.0"
GATEWAY = f"{SUBNET}.1"
NAMESPACE_PREFIX = "fbh"
RABBITMQ_USER = "f_brain_test_hosts"


class HostsUnavailableError(RuntimeError):
    """This machine cannot make network namespaces (no root, no iproute2)."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def namespaces_possible() -> str | None:
    """None when namespaces can be made here, else why not."""
    if shutil.which("ip") is None or shutil.which("unshare") is None:
        return "iproute2 and util-linux (ip, unshare) are not installed"
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    probe = f"{NAMESPACE_PREFIX}probe"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


class NetnsHosts:
    """`count` hosts; start pool replicas on them, cut them off and bring them back."""

    def __init__(self, count: int, env: dict[str, str], log_dir: Path) -> None:
        self.count = count
        self.base_env = env
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen] = {}
        self.env: dict[str, str] = {}
        self._relay: subprocess.Popen | None = None

    @staticmethod
    def name(host: int) -> str:
        """The namespace, and the host name its processes see."""
        return f"{NAMESPACE_PREFIX}{host}"

    @staticmethod
    def address(host: int) -> str:
        """The host's address on the bridge."""
        return f"{SUBNET}.{10 + host}"

    # --- lifecycle ---------------------------------------------------------------

    def __enter__(self) -> NetnsHosts:
        try:
            self._remove_network()  # what a run killed with -9 may have left
            self._make_network()
            self._start_relay_and_user()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for name in list(self.processes):
            self.kill(name)
        if self._relay is not None:
            self._relay.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._relay.wait(timeout=10)
            if self._relay.poll() is None:
                self._relay.kill()
                self._relay.wait(timeout=10)
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            _rabbitmqctl("delete_user", RABBITMQ_USER)
        self._remove_network()

    def _make_network(self) -> None:
        _ip("link", "add", BRIDGE, "type", "bridge")
        _ip("addr", "add", f"{GATEWAY}/24", "dev", BRIDGE)
        _ip("link", "set", BRIDGE, "up")
        for host in range(1, self.count + 1):
            ns = self.name(host)
            _ip("netns", "add", ns)
            _ip("link", "add", f"{ns}-br", "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("link", "set", f"{ns}-br", "master", BRIDGE, "up")
            _ip("-n", ns, "addr", "add", f"{self.address(host)}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")

    def _remove_network(self) -> None:
        for host in range(1, self.count + 1):
            _ip("netns", "del", self.name(host), check=False)  # takes its end of the veth pair, and so both
            _ip("link", "del", f"{self.name(host)}-br", check=False)
        _ip("link", "del", BRIDGE, check=False)

    def _start_relay_and_user(self) -> None:
        broker = urlsplit(self.base_env["CELERY_BROKER_URL"])
        vhost = broker.path.lstrip("/") or "/"
        password = secrets.token_hex(16)
        _rabbitmqctl("add_user", RABBITMQ_USER, password)
        _rabbitmqctl("set_permissions", "-p", vhost, RABBITMQ_USER, ".*", ".*", ".*")
        simulator = urlsplit(self.base_env["WEATHER_API_URL"])
        pg_port = int(self.base_env.get("POSTGRES_PORT", "5432"))
        routes = {broker.port or 5672: (broker.hostname, broker.port or 5672),
                  pg_port: (self.base_env.get("POSTGRES_HOST", "127.0.0.1"), pg_port),
                  simulator.port: (simulator.hostname, simulator.port)}
        log = (self.log_dir / "relay.log").open("ab")
        self._relay = subprocess.Popen(
            [sys.executable, "-m", "tools.relay", GATEWAY, *(f"{p}={h}:{t}" for p, (h, t) in routes.items())],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: self._relay.poll() is not None or "relay on" in (self.log_dir / "relay.log").read_text(),
                 timeout=30, what="the relay to listen")
        assert self._relay.poll() is None, (self.log_dir / "relay.log").read_text()
        self.env = {
            **self.base_env,
            "CELERY_BROKER_URL": urlunsplit(("amqp", f"{RABBITMQ_USER}:{password}@{GATEWAY}:{broker.port or 5672}",
                                             broker.path, "", "")),
            "POSTGRES_HOST": GATEWAY,
            "WEATHER_API_URL": urlunsplit((simulator.scheme, f"{GATEWAY}:{simulator.port}", simulator.path, "", "")),
        }

    # --- processes ---------------------------------------------------------------

    def start(self, host: int, pool: str, extra_env: dict[str, str] | None = None,
              **overrides: object) -> subprocess.Popen:
        """Start a replica of `pool` on `host` through the launcher; wait until the broker counts its consumer."""
        name = f"{pool}@{self.name(host)}"
        queue = pool
        before = queue_consumers(queue)
        env = {**self.env, **(extra_env or {}),
               **{f"WORKER_{pool.upper()}_{k.upper()}": str(v) for k, v in overrides.items()}}
        log = (self.log_dir / f"{name}.log").open("ab")
        process = subprocess.Popen(
            ["ip", "netns", "exec", self.name(host), "unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"',
             self.name(host), sys.executable, "-m", "workers", "run", pool, "--loglevel", "INFO"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.processes[name] = process
        wait_for(lambda: process.poll() is not None or queue_consumers(queue) > before, timeout=60,
                 what=f"{name} to consume {queue}")
        if process.poll() is not None:
            raise AssertionError(f"{name} exited: see {self.log_dir / (name + '.log')}")
        return process

    def kill(self, name: str) -> None:
        """SIGKILL a replica and every process it started."""
        process = self.processes.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def stop(self, name: str) -> None:
        """SIGTERM a replica (Celery's warm shutdown, as a platform stops it) and wait for it."""
        process = self.processes.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    # --- the network -------------------------------------------------------------

    def cut(self, host: int) -> None:
        """Take the host off the network: its interface goes down, its connections go silent."""
        _ip("-n", self.name(host), "link", "set", "eth0", "down")

    def reconnect(self, host: int) -> None:
        """Bring the host's interface back (its address and routes come back with it)."""
        _ip("-n", self.name(host), "link", "set", "eth0", "up")


@contextlib.contextmanager
def netns_hosts(count: int, env: dict[str, str], log_dir: Path) -> Iterator[NetnsHosts]:
    """`count` test hosts for the body; all of it removed afterwards."""
    reason = namespaces_possible()
    if reason:
        raise HostsUnavailableError(reason)
    log_dir.mkdir(parents=True, exist_ok=True)
    with NetnsHosts(count, env, log_dir) as hosts:
        yield hosts
