"""A three-node RabbitMQ cluster on loopback for tests, from Debian's rabbitmq-server, never the machine's own node.

Each node has its own name (`fbrN@localhost`), AMQP and distribution ports, and
data, log and config folders under one temporary directory; an Erlang cookie of
its own keeps the machine's node and its tools out of it. The nodes are started
in the foreground as processes this module owns (so a test can SIGKILL one) and
joined with `rabbitmqctl join_cluster`. Everything is stopped and removed on exit,
whatever happened.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
NODE_PREFIX = "fbr"
# Ports of the project's own: AMQP BASE_PORT + n, Erlang distribution DIST_BASE_PORT + n, the CLI
# tools' own distribution ports CLI_DIST_PORTS. Clear of RabbitMQ's defaults and all below Linux's
# ephemeral range (32768 up): a node whose port an outgoing connection happened to hold refused to
# start (dist_port_already_used) in CI.
BASE_PORT = 21670
DIST_BASE_PORT = 22670
CLI_DIST_PORTS = (22700, 22720)
START_TIMEOUT_S = 120
JOIN_START_TRIES = 3


class ClusterUnavailableError(RuntimeError):
    """Debian's rabbitmq-server is not installed here."""


def cluster_possible() -> str | None:
    """None when a test cluster can be made here, else why not."""
    if not (RABBITMQ_BIN / "rabbitmq-server").exists():
        return "Debian's rabbitmq-server is not installed (/usr/lib/rabbitmq/bin)"
    if os.geteuid() != 0:
        return "the test cluster runs Debian's rabbitmq-server scripts as root"
    return None


@dataclass
class Node:
    """One node of the test cluster."""

    index: int
    folder: Path
    process: subprocess.Popen | None = None

    @property
    def name(self) -> str:
        return f"{NODE_PREFIX}{self.index}@localhost"

    @property
    def port(self) -> int:
        return BASE_PORT + self.index

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"


class ClusterOps:
    """What tests ask of a RabbitMQ cluster, whatever runs its nodes: `ctl` and `running` say how."""

    nodes: list

    def ctl(self, node: Any, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        """rabbitmqctl against one node."""
        raise NotImplementedError

    def running(self) -> list:
        """The nodes that are up."""
        raise NotImplementedError

    def exited(self, node: Any) -> str | None:
        """Why a node that was started is gone, or None while it runs."""
        raise NotImplementedError

    def wait_until_up(self, node: Any, timeout: float = START_TIMEOUT_S) -> None:
        """Until the node's AMQP port accepts connections and the node says it has started."""
        deadline = time.monotonic() + timeout
        while True:
            if why := self.exited(node):
                raise RuntimeError(why)
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", node.port), timeout=1):
                if self.ctl(node, "await_startup", timeout=60, check=False).returncode == 0:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{node.name} did not start within {timeout} s")
            time.sleep(0.5)

    @property
    def broker_url(self) -> str:
        """Celery's failover list: every node, tried in turn."""
        return ";".join(node.url for node in self.nodes)

    def queue_info(self, *fields: str) -> dict[str, list[str]]:
        """`rabbitmqctl list_queues name <fields>` asked of a running node: {queue: [values]}."""
        node = self.running()[0]
        out = self.ctl(node, "list_queues", "name", *fields).stdout
        return {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:] if line.strip()}

    def consumers(self, queue: str) -> int:
        """Consumers of a queue, counted by the cluster (0 while the queue is unavailable)."""
        values = self.queue_info("consumers").get(queue) or ["0"]
        return int(values[0])

    def leader(self, queue: str) -> Any:
        """The node leading a quorum queue."""
        name = self.queue_info("leader")[queue][0]
        return next(node for node in self.nodes if node.name == name)

    def join(self, node: Any, seed: Any) -> None:
        """Make `node` a member of `seed`'s cluster."""
        self.ctl(node, "stop_app")
        self.ctl(node, "join_cluster", seed.name)
        # start_app right after a join was seen to fail once (exit 69, a RabbitMQ 4.0 node still
        # syncing with its seed); it succeeds when asked again.
        for _ in range(JOIN_START_TRIES - 1):
            if self.ctl(node, "start_app", check=False).returncode == 0:
                return
            time.sleep(2)
        self.ctl(node, "start_app")

    def running_members(self) -> set[str]:
        """The nodes the cluster counts as running, as the first live node sees it."""
        out = self.ctl(self.running()[0], "cluster_status", "--formatter", "json").stdout
        return set(json.loads(out)["running_nodes"])

    def launch(self, node: Any) -> None:
        """Start one node (again), without waiting for it."""
        raise NotImplementedError

    def start(self, node: Any) -> None:
        """Start one node (again) and wait until it accepts AMQP connections."""
        self.start_together([node])

    def start_together(self, nodes: list) -> None:
        """Start the nodes at once and wait until each accepts AMQP connections: their boots overlap."""
        for node in nodes:
            self.launch(node)
        for node in nodes:
            self.wait_until_up(node)

    def form(self) -> None:
        """Start every node, join the others to the first, and wait until all run in one cluster."""
        self.start_together(self.nodes)
        for node in self.nodes[1:]:
            self.join(node, self.nodes[0])
        self.wait_until_formed()

    def make_whole(self) -> None:
        """Start again every node a test killed or stopped, and wait until the cluster has them all."""
        running = self.running()
        self.start_together([node for node in self.nodes if node not in running])
        self.wait_until_formed()

    def wait_until_formed(self, timeout: float = START_TIMEOUT_S) -> None:
        """Until every node of the cluster runs in it: quorum queues take their members from the running nodes."""
        deadline = time.monotonic() + timeout
        wanted = {node.name for node in self.nodes}
        while (seen := self.running_members()) != wanted:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster has {sorted(seen)} running, not {sorted(wanted)}")
            time.sleep(0.5)


@dataclass
class RabbitCluster(ClusterOps):
    """Three (or `size`) nodes joined into one cluster."""

    folder: Path
    size: int = 3
    nodes: list[Node] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.home = self.folder / "home"
        self.nodes = [Node(i, self.folder / f"node{i}") for i in range(1, self.size + 1)]

    def home_node(self, queue: str) -> Node:
        """The node a classic queue lives on (its process id names the node)."""
        pid = self.queue_info("pid")[queue][0]  # <fbr1@localhost.1691.512.0>
        return next(node for node in self.nodes if pid.startswith(f"<{node.name}."))

    # --- rabbitmqctl -----------------------------------------------------------------

    def _env(self, node: Node) -> dict[str, str]:
        base = node.folder
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),  # the cookie is $HOME/.erlang.cookie
            "LANG": "C.UTF-8",
            "RABBITMQ_NODENAME": node.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(node.port),
            "RABBITMQ_DIST_PORT": str(DIST_BASE_PORT + node.index),
            "RABBITMQ_CTL_DIST_PORT_MIN": str(CLI_DIST_PORTS[0]),
            "RABBITMQ_CTL_DIST_PORT_MAX": str(CLI_DIST_PORTS[1]),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_PID_FILE": str(base / "rabbitmq.pid"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            # Not the machine's /etc/rabbitmq/rabbitmq-env.conf.
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def ctl(self, node: Node, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        """rabbitmqctl against one node of this cluster."""
        return subprocess.run([str(RABBITMQ_BIN / "rabbitmqctl"), "-q", "-n", node.name, *args],
                              env=self._env(node), capture_output=True, text=True, timeout=timeout, check=check)

    def queues(self, node: Node, *args: str) -> subprocess.CompletedProcess:
        """rabbitmq-queues against one node (quorum queue membership, leaders)."""
        return subprocess.run([str(RABBITMQ_BIN / "rabbitmq-queues"), "-q", "-n", node.name, *args],
                              env=self._env(node), capture_output=True, text=True, timeout=60, check=True)

    # --- lifecycle ---------------------------------------------------------------

    def launch(self, node: Node) -> None:
        """Start one node in the foreground, its own process group."""
        for sub in ("mnesia", "log"):
            (node.folder / sub).mkdir(parents=True, exist_ok=True)
        # The listener comes from RABBITMQ_NODE_IP_ADDRESS and RABBITMQ_NODE_PORT; the
        # test cluster accepts work on a small disk.
        (node.folder / "rabbitmq.conf").write_text("disk_free_limit.absolute = 50MB\n")
        (node.folder / "advanced.config").write_text("[].\n")
        (node.folder / "enabled_plugins").write_text("[].\n")
        (node.folder / "rabbitmq-env.conf").write_text("")
        log = (node.folder / "server.log").open("ab")
        node.process = subprocess.Popen([str(RABBITMQ_BIN / "rabbitmq-server")], env=self._env(node),
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def exited(self, node: Node) -> str | None:
        """Why the node's process is gone (its log's end), or None while it runs."""
        if node.process is not None and node.process.poll() is not None:
            return f"{node.name} exited: {(node.folder / 'server.log').read_text()[-3000:]}"
        return None

    def kill(self, node: Node) -> None:
        """SIGKILL the node and everything it started (the Erlang VM, its port programs)."""
        if node.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.process.pid, signal.SIGKILL)
        node.process.wait(timeout=30)
        node.process = None

    def stop(self, node: Node) -> None:
        """Stop the node cleanly."""
        if node.process is None:
            return
        self.ctl(node, "stop", timeout=120, check=False)
        try:
            node.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.kill(node)
        node.process = None

    def running(self) -> list[Node]:
        """The nodes whose process is up."""
        return [node for node in self.nodes if node.process is not None and node.process.poll() is None]

    def __enter__(self) -> RabbitCluster:
        try:
            self.home.mkdir(parents=True, exist_ok=True)
            cookie = self.home / ".erlang.cookie"
            cookie.write_text(secrets.token_hex(20).upper())
            cookie.chmod(0o400)
            self.form()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for node in self.nodes:
            self.kill(node)
        # Each VM started its own epmd-registered name only; the machine's epmd forgets
        # a name when its node's connection closes. Nothing else outlives the folder.
        shutil.rmtree(self.folder, ignore_errors=True)


@contextlib.contextmanager
def rabbit_cluster(size: int = 3) -> Iterator[RabbitCluster]:
    """A `size`-node cluster for the body, removed afterwards."""
    reason = cluster_possible()
    if reason:
        raise ClusterUnavailableError(reason)
    folder = Path(tempfile.mkdtemp(prefix="f_brain-rabbit-cluster-"))
    with RabbitCluster(folder, size) as cluster:
        yield cluster
