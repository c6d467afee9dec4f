"""RabbitMQ test brokers of either generation, one node or a cluster, in containers of the stand-in images.

The stand-ins (tools/standins) are built from Debian's packages: bookworm's RabbitMQ
3.10 and trixie's 4.0 (Erlang 27). Each node runs in a container of its own on a
network of its own, with an Erlang cookie of its own, and publishes its AMQP port on a
loopback port chosen here (kept across a restart, so a broker URL list stays valid).
Nodes 2..N join node 1 with `rabbitmqctl join_cluster`, as tools/rabbit_cluster.py does
for the 3.10 cluster that runs on the host. A node is killed by SIGKILL of its VM from
the host, and started again with its data. Containers and network are removed on exit,
whatever happened; a run that was itself killed leaves them labelled for the next one
to sweep.

`strict` switches on RabbitMQ 4.3's refusal of transient non-exclusive queues on a 4.0
node (`deprecated_features.permit.transient_nonexcl_queues = false`).

    python -m tools.rabbit_containers --generation 4 --strict -- <command ...>

runs a command against a fresh single node, with CELERY_BROKER_URL, RABBITMQ_GENERATION,
TEST_BROKER_CTL (how tests reach rabbitmqctl) and TEST_BROKER_API (its management HTTP API)
set for it; `--possible` says whether a test broker can run here.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tools.compose_stack import engine_possible
from tools.rabbit_cluster import ClusterOps
from tools.standins import STANDINS, ensure_standin
from tools.web_tier import free_port

LABEL = "f-brain.test-broker"
START_TIMEOUT_S = 180
# What a strict node refuses, as RabbitMQ 4.3 does by default.
STRICT_CONF = "deprecated_features.permit.transient_nonexcl_queues = false\n"
# The test brokers accept work on a small disk, as the host's test cluster does.
NODE_CONF = "disk_free_limit.absolute = 50MB\n"


def _docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=check)


def sweep() -> None:
    """Remove containers and networks an earlier run left behind (it was killed before its own clean-up)."""
    ids = _docker("ps", "-aq", "--filter", f"label={LABEL}", check=False).stdout.split()
    if ids:
        _docker("rm", "-f", "-v", *ids, check=False)
    networks = _docker("network", "ls", "-q", "--filter", f"label={LABEL}", check=False).stdout.split()
    if networks:
        _docker("network", "rm", *networks, check=False)


@dataclass
class ContainerNode:
    """One node: its container, its name in the cluster and its loopback AMQP port."""

    index: int
    container: str
    port: int
    # The management plugin's HTTP API (the stand-in images enable it), on loopback too.
    management_port: int = field(default_factory=free_port)
    running: bool = False

    @property
    def hostname(self) -> str:
        return self.container

    @property
    def name(self) -> str:
        return f"rabbit@{self.hostname}"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    @property
    def management_api(self) -> str:
        """The node's management HTTP API, as Flower's --broker_api takes it."""
        return f"http://guest:guest@127.0.0.1:{self.management_port}/api/"


@dataclass
class ContainerBroker(ClusterOps):
    """`size` RabbitMQ nodes of one generation, joined into one cluster when more than one."""

    generation: str
    size: int = 1
    strict: bool = False
    run_id: str = field(default_factory=lambda: secrets.token_hex(3))
    nodes: list[ContainerNode] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.image = STANDINS[f"rabbitmq{self.generation}"].tag
        self.network = f"fbr{self.generation}-{self.run_id}"
        self.cookie = secrets.token_hex(20).upper()
        self.folder = Path(tempfile.mkdtemp(prefix="f_brain-rabbit-containers-"))
        self.nodes = [ContainerNode(i, f"fbr{self.generation}-{self.run_id}-{i}", free_port())
                      for i in range(1, self.size + 1)]

    @property
    def ctl_prefix(self) -> list[str]:
        """How to run rabbitmqctl against node 1 (tests take it from TEST_BROKER_CTL)."""
        return ["docker", "exec", self.nodes[0].container, "rabbitmqctl"]

    def ctl(self, node: ContainerNode, *args: str, timeout: float = 60,
            check: bool = True) -> subprocess.CompletedProcess:
        """rabbitmqctl inside one node's container."""
        return _docker("exec", node.container, "rabbitmqctl", "-q", *args, timeout=timeout, check=check)

    # --- lifecycle ---------------------------------------------------------------

    def _create(self, node: ContainerNode) -> None:
        conf = self.folder / f"{node.container}.conf"
        conf.write_text(NODE_CONF + (STRICT_CONF if self.strict else ""))
        cookie_args = f"-setcookie {self.cookie}"
        _docker("create", "--name", node.container, "--hostname", node.hostname, "--network", self.network,
                "--label", LABEL, "-p", f"127.0.0.1:{node.port}:5672",
                "-p", f"127.0.0.1:{node.management_port}:15672",
                "-v", f"{conf}:/etc/rabbitmq/conf.d/20-test.conf:ro",
                "-e", f"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS={cookie_args}",
                "-e", f"RABBITMQ_CTL_ERL_ARGS={cookie_args}",
                self.image)

    def launch(self, node: ContainerNode) -> None:
        """Start one node's container (again, with its data)."""
        _docker("start", node.container)
        node.running = True

    def wait_until_up(self, node: ContainerNode, timeout: float = START_TIMEOUT_S) -> None:
        """Until the node accepts AMQP connections (a container's node takes longer to boot)."""
        super().wait_until_up(node, timeout=timeout)

    def exited(self, node: ContainerNode) -> str | None:
        """Why the node's container stopped (its log's end), or None while it runs."""
        state = json.loads(_docker("inspect", "-f", "{{json .State}}", node.container).stdout)
        if state["Running"]:
            return None
        logs = _docker("logs", "--tail", "60", node.container, check=False)
        return f"{node.name} exited ({state['ExitCode']}): {logs.stdout}{logs.stderr}"

    def kill(self, node: ContainerNode) -> None:
        """SIGKILL the node's VM from the host, without a word to anyone; its container stops with it."""
        pid = int(_docker("inspect", "-f", "{{.State.Pid}}", node.container).stdout.strip() or 0)
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _docker("wait", node.container, timeout=60, check=False)
        node.running = False

    def stop(self, node: ContainerNode) -> None:
        """Stop the node cleanly."""
        _docker("stop", "-t", "60", node.container, timeout=90, check=False)
        node.running = False

    def running(self) -> list[ContainerNode]:
        """The nodes started and not killed or stopped since."""
        return [node for node in self.nodes if node.running]

    def __enter__(self) -> ContainerBroker:
        try:
            ensure_standin(f"rabbitmq{self.generation}")
            _docker("network", "create", "--label", LABEL, self.network)
            for node in self.nodes:
                self._create(node)
            self.form()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        containers = [node.container for node in self.nodes]
        _docker("rm", "-f", "-v", *containers, check=False, timeout=120)
        _docker("network", "rm", self.network, check=False)
        for conf in self.folder.glob("*.conf"):
            conf.unlink()
        self.folder.rmdir()


@contextlib.contextmanager
def container_broker(generation: str, size: int = 1, strict: bool = False) -> Iterator[ContainerBroker]:
    """A broker of `size` nodes for the body, removed afterwards."""
    sweep()
    with ContainerBroker(generation, size, strict) as broker:
        yield broker


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.rabbit_containers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generation", choices=["3", "4"], default="4")
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--strict", action="store_true",
                        help="refuse transient non-exclusive queues, as RabbitMQ 4.3 does")
    parser.add_argument("--possible", action="store_true",
                        help="exit 0 when a test broker can run here, else say why not and exit 1")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run against it")
    args = parser.parse_args(argv)
    if args.possible:
        reason = engine_possible()
        print(reason or "a Docker engine answers and the stand-ins can be built")
        return 1 if reason else 0
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    started = time.monotonic()
    with container_broker(args.generation, args.nodes, args.strict) as broker:
        version = broker.ctl(broker.nodes[0], "version").stdout.strip()
        print(f"tools.rabbit_containers: RabbitMQ {version} ({args.nodes} node(s){', strict' if args.strict else ''})"
              f" at {broker.broker_url}, ready in {time.monotonic() - started:.0f} s", flush=True)
        env = {**os.environ, "CELERY_BROKER_URL": broker.broker_url, "RABBITMQ_GENERATION": args.generation,
               "TEST_BROKER_CTL": shlex.join(broker.ctl_prefix),
               "TEST_BROKER_API": broker.nodes[0].management_api}
        return subprocess.run(command, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
