"""The web tier as deployed, on loopback, for tests: the real web server and the nginx edge from deploy/nginx/."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .harness import ROOT, wait_for

EDGE_TEMPLATE = ROOT / "deploy" / "nginx" / "default.conf.template"
# What the nginx image's entrypoint provides around the rendered template: the process
# settings and the http block it is included in, with every path inside this run's folder.
EDGE_MAIN = """\
worker_processes 1;
pid {prefix}/nginx.pid;
events {{ worker_connections 512; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/default.conf;
}}
"""


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def render_edge(variables: dict[str, str]) -> str:
    """The edge's configuration as the nginx image renders it: only ${NAME} of the given names is replaced."""
    text = EDGE_TEMPLATE.read_text()
    for name, value in variables.items():
        text = text.replace("${" + name + "}", value)
    if "${" in text:
        raise ValueError(f"{EDGE_TEMPLATE.name} has a placeholder this renderer does not fill")
    return text


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # it answered, if not with a 200
    except OSError:
        return False


@dataclass
class WebTier:
    """Where the running tier answers: the edge (as in compose and Kubernetes) and the web server behind it."""

    edge: str
    web: str
    web_log: Path
    edge_log_dir: Path


def _stop(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@contextlib.contextmanager
def web_tier(env: dict[str, str]) -> Iterator[WebTier]:
    """`python -m server_config.serve` on a loopback port, and nginx from deploy/nginx/ in front of it.

    Both are stopped, and their folder removed, whatever happens in the body.
    """
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise RuntimeError("nginx is not installed (apt-get install nginx-light; .ci/run does)")
    web_port, edge_port = free_port(), free_port()
    folder = Path(tempfile.mkdtemp(prefix="f_brain-web-tier-"))
    # nginx's workers drop root privileges: they must be able to write their temp folders.
    folder.chmod(0o777)
    processes: list[subprocess.Popen] = []
    try:
        web_log = folder / "web.log"
        with web_log.open("ab") as out:
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "server_config.serve"], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                env={**env, "PORT": str(web_port), "WEB_BIND_ADDRESS": "127.0.0.1"}, start_new_session=True))
        (folder / "default.conf").write_text(render_edge({"EDGE_PORT": f"127.0.0.1:{edge_port}",
                                                          "WEB_UPSTREAM": f"127.0.0.1:{web_port}"}))
        (folder / "nginx.conf").write_text(EDGE_MAIN.format(prefix=folder))
        processes.append(subprocess.Popen(
            [nginx, "-p", str(folder), "-c", str(folder / "nginx.conf"), "-e", str(folder / "error.log"),
             "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True))
        tier = WebTier(f"http://127.0.0.1:{edge_port}", f"http://127.0.0.1:{web_port}", web_log, folder)

        def up() -> bool:
            for process in processes:
                assert process.poll() is None, f"{process.args[0]} exited: {web_log.read_text()[-2000:]}"
            return _answers(f"{tier.web}/healthz") and _answers(f"{tier.edge}/healthz")

        wait_for(up, timeout=60, interval=0.2, what="the web server and the edge to answer")
        yield tier
    finally:
        for process in reversed(processes):
            _stop(process)
        shutil.rmtree(folder, ignore_errors=True)
