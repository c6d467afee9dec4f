"""`python -m server_config.serve`: the web role, granian serving the Django app (Procfile, compose, image alike).

Why granian and not gunicorn's sync workers: a sync worker reads a request's
headers and body itself, so two clients trickling their headers held both
workers and stopped the tier, health checks included. Granian reads headers in
its Rust I/O loop, within WEB_HEADER_TIMEOUT_MS; a client that never finishes them
is dropped then, and costs no Python thread meanwhile. Bodies are read whole by the
event loop in front of Django (server_config/bodies.py), within WEB_BODY_TIMEOUT_MS,
before a request takes one of the WEB_THREADS app threads: every run mode holds,
with or without the nginx edge of docker-compose and Kubernetes in front.
"""

from __future__ import annotations

import os
import subprocess
import sys

from granian import Granian
from granian.constants import HTTPModes, Interfaces
from granian.http import HTTP1Settings

from envvars import env_int, env_str

from .logsetup import from_environment
from .paths import BASE_DIR, static_collected

# Under the platforms' stop grace (30 s in compose and Kubernetes): requests in flight finish.
GRACEFUL_STOP_S = 20


def web_threads() -> int:
    """App threads per web process (WEB_THREADS): each runs one request at a time and holds a database connection."""
    # Granian's own guideline for WSGI (more threads than that only contend for the GIL).
    return env_int("WEB_THREADS", 2 * (os.cpu_count() or 1) + 1, minimum=1)


def body_limits() -> tuple[float, int]:
    """How long a body may take to arrive in full (WEB_BODY_TIMEOUT_MS), and its largest size (WEB_MAX_BODY_BYTES).

    The defaults are the nginx edge's (deploy/nginx/): client_body_timeout 10s, client_max_body_size 1m.
    """
    return (env_int("WEB_BODY_TIMEOUT_MS", 10_000, minimum=100) / 1000,
            env_int("WEB_MAX_BODY_BYTES", 1024 * 1024, minimum=1024))


def server() -> Granian:
    """The web server as the environment configures it (PORT, WEB_BIND_ADDRESS, WEB_CONCURRENCY, WEB_THREADS, ...)."""
    return Granian(
        # ASGI in front, so request bodies are read by the event loop; Django itself runs as WSGI on
        # WEB_THREADS app threads (server_config/asgi.py).
        "server_config.asgi:application",
        interface=Interfaces.ASGI,
        websockets=False,
        # All interfaces unless told otherwise (scripts/run says 127.0.0.1).
        address=env_str("WEB_BIND_ADDRESS", "0.0.0.0"),
        port=env_int("PORT", 8000, minimum=1, maximum=65535),
        workers=env_int("WEB_CONCURRENCY", 2, minimum=1),
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
