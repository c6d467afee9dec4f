"""`python -m server_config.serve`: the web role, granian serving the WSGI app (Procfile, compose, image alike).

Why granian and not gunicorn's sync workers: a sync worker reads a request's
headers and body itself, so two clients trickling their headers held both
workers and stopped the tier, health checks included. Granian reads requests in
its Rust I/O loop and calls Django only once the headers are in, within
WEB_HEADER_TIMEOUT_MS; a client that never finishes its headers is dropped then,
and costs no Python thread meanwhile. Request bodies are read by the app thread,
so in docker-compose and Kubernetes an nginx edge (deploy/nginx/) buffers them
first and drops a body that stalls; a Procfile PaaS's router does the same.
"""

from __future__ import annotations

import os
import subprocess
import sys

from granian import Granian
from granian.constants import HTTPModes, Interfaces
from granian.http import HTTP1Settings

from .env import env_int, env_str
from .logsetup import from_environment
from .paths import BASE_DIR, static_collected

# Under the platforms' stop grace (30 s in compose and Kubernetes): requests in flight finish.
GRACEFUL_STOP_S = 20


def server() -> Granian:
    """The web server as the environment configures it (PORT, WEB_BIND_ADDRESS, WEB_CONCURRENCY, WEB_THREADS, ...)."""
    # Granian's own guideline for WSGI (more threads than that only contend for the GIL).
    threads = env_int("WEB_THREADS", 2 * (os.cpu_count() or 1) + 1, minimum=1)
    return Granian(
        "server_config.wsgi:application",
        interface=Interfaces.WSGI,
        # All interfaces unless told otherwise (scripts/run says 127.0.0.1).
        address=env_str("WEB_BIND_ADDRESS", "0.0.0.0"),
        port=env_int("PORT", 8000, minimum=1, maximum=65535),
        workers=env_int("WEB_CONCURRENCY", 2, minimum=1),
        # Requests a worker runs at once; each holds a database connection while it runs.
        # (No backpressure at that level: it counted connections still sending their
        # headers, so a few slow clients held off the health checks.)
        blocking_threads=threads,
        # HTTP/1.1 only: what the edge proxy and PaaS routers speak, and no h2c surface.
        http=HTTPModes.http1,
        http1_settings=HTTP1Settings(header_read_timeout=env_int("WEB_HEADER_TIMEOUT_MS", 10_000, minimum=100)),
        # The project's own log format; the access line is the app's (weather/requestlog.py),
        # because it carries the request id a worker's lines of that click share.
        log_dictconfig=from_environment(),
        log_access=False,
        workers_kill_timeout=GRACEFUL_STOP_S,
        respawn_failed_workers=True,
    )


def collect_static_if_missing() -> None:
    """Collect the static files if nothing has: a PaaS dyno starts from the build, not from its release step."""
    if not static_collected():
        subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=BASE_DIR, check=True)


if __name__ == "__main__":
    collect_static_if_missing()
    server().serve()
