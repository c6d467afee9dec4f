"""The project's docker-compose stack on a real Docker engine, driven as a user drives it, for the compose suite.

A stack lives in a folder of its own: the project's docker-compose.yml and deploy/
files, the stand-in override (tools/standins/compose.yml) and a `.env` made from
`.env.example` with its secrets filled in. It has a compose project name of its own
and publishes on free loopback ports, so it never meets a user's stack. Leaving the
context removes its containers, volumes and network, whatever happened; the images
stay for the next run.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from http.cookiejar import CookieJar
from pathlib import Path

from .harness import ROOT, wait_for
from .standins import HERE as STANDINS_DIR
from .standins import StandinBuildError, ensure_all, ensure_standin, image_digest, prune_replaced
from .web_tier import free_port

APP_IMAGE = "f-brain:latest"
# On the images the tests build, so the ones a rebuild replaced can be removed.
TEST_BUILD_LABEL = "f-brain.test-build"
COMPOSE_TIMEOUT_S = 300
SIMULATOR_PORT = 8081
# Files a stack needs beside its compose file (docker-compose.yml mounts them by relative path).
STACK_FILES = ["docker-compose.yml", ".env.example", "deploy"]


class EngineUnavailableError(RuntimeError):
    """No Docker engine or no Compose v2 here."""


def engine_possible() -> str | None:
    """None when a compose stack can run here, else why not."""
    if shutil.which("docker") is None:
        return "the docker client is not installed"
    info = _docker("info", "--format", "{{.ServerVersion}}")
    if info.returncode != 0 or not info.stdout.strip():
        return f"no Docker engine answers: {info.stderr.strip()[:300]}"
    version = _docker("compose", "version", "--short")
    if version.returncode != 0 or not version.stdout.strip().startswith("2"):
        return f"Compose v2 (`docker compose`) is not installed: {version.stderr.strip()[:300]}"
    if shutil.which("debootstrap") is None:
        return "debootstrap is not installed (the stand-in images are built with it)"
    return None


def engine_versions() -> dict[str, str]:
    """The engine's and Compose's versions, for the record."""
    return {"engine": _docker("info", "--format", "{{.ServerVersion}}").stdout.strip(),
            "compose": _docker("compose", "version", "--short").stdout.strip()}


def _docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


@dataclass
class AppImage:
    """The project's image as built from its Dockerfile on the stand-in base."""

    tag: str
    build_seconds: float
    size_bytes: int
    user: str


def build_app_image() -> AppImage:
    """`docker build` of the project's Dockerfile, on the stand-in of python:3.11-slim."""
    base = ensure_standin("python")
    started = time.monotonic()
    done = _docker("build", "--quiet", "--tag", APP_IMAGE, "--label", TEST_BUILD_LABEL,
                   "--build-arg", f"PYTHON_IMAGE={base}", str(ROOT), timeout=COMPOSE_TIMEOUT_S * 2)
    if done.returncode != 0:
        raise StandinBuildError(f"docker build of the project failed: {done.stderr[-3000:]}")
    seconds = time.monotonic() - started
    prune_replaced(TEST_BUILD_LABEL)
    inspect = json.loads(_docker("image", "inspect", APP_IMAGE).stdout)[0]
    return AppImage(APP_IMAGE, seconds, int(inspect["Size"]), inspect["Config"].get("User", ""))


def stack_env(extra: dict[str, str] | None = None) -> str:
    """`.env` as a user makes it: `.env.example` with every change-me filled in, then `extra` on top."""
    text = (ROOT / ".env.example").read_text()
    password = secrets.token_urlsafe(16)
    for name, value in (("SECRET_KEY", secrets.token_urlsafe(50)), ("RABBITMQ_ERLANG_COOKIE", secrets.token_hex(20))):
        text = re.sub(rf"^{name}=.*$", f"{name}={value}", text, flags=re.MULTILINE)
    text = text.replace("change-me", password)
    settings = dict(extra or {})
    lines = [line for line in text.splitlines() if line.split("=", 1)[0] not in settings]
    return "\n".join([*lines, *(f"{name}={value}" for name, value in settings.items())]) + "\n"


@dataclass
class ComposeStack:
    """One compose project in its own folder; every call is `docker compose` as a user types it."""

    folder: Path
    project: str
    broker: str
    edge_port: int
    flower_port: int
    profiles: list[str] = field(default_factory=list)
    # The simulator's host port, asked of compose once per simulator container (polls read it often).
    _simulator_port: str | None = field(default=None, repr=False)

    def compose(self, *args: str, timeout: float = COMPOSE_TIMEOUT_S,
                check: bool = True) -> subprocess.CompletedProcess:
        argv = ["docker", "compose", "-f", "docker-compose.yml", "-f", "standins.yml"]
        for profile in self.profiles:
            argv += ["--profile", profile]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "COMPOSE_PROJECT_NAME": self.project,
               "STANDIN_BROKER": self.broker, "HOME": os.environ.get("HOME", "/root")}
        done = subprocess.run([*argv, *args], cwd=self.folder, capture_output=True, text=True, timeout=timeout, env=env)
        if check and done.returncode != 0:
            raise AssertionError(f"docker compose {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-4000:]}")
        return done

    def up(self, *args: str, timeout: float = COMPOSE_TIMEOUT_S) -> subprocess.CompletedProcess:
        self._simulator_port = None  # a recreated simulator publishes on another port
        return self.compose("up", "-d", "--no-build", *args, timeout=timeout)

    def containers(self, service: str, all_states: bool = False) -> list[str]:
        flags = ["-a"] if all_states else []
        return self.compose("ps", *flags, "-q", service).stdout.split()

    def inspect(self, container: str) -> dict:
        return json.loads(_docker("inspect", container).stdout)[0]

    def states(self) -> dict[str, list[dict]]:
        """Every container of the stack by service: its state and health as the engine reports them."""
        out = self.compose("ps", "-a", "--format", "json").stdout
        rows = [json.loads(line) for line in out.splitlines() if line.strip()]
        by_service: dict[str, list[dict]] = {}
        for row in rows:
            by_service.setdefault(row["Service"], []).append(row)
        return by_service

    def wait_healthy(self, services: list[str], timeout: float = 240) -> None:
        """Until every container of these services is running and healthy by its own health check."""
        def healthy() -> bool:
            states = self.states()
            for service in services:
                rows = states.get(service, [])
                if not rows:
                    return False
                for row in rows:
                    if row["State"] != "running":
                        return False
                    if row.get("Health") not in ("healthy", ""):
                        return False
            return True

        try:
            wait_for(healthy, timeout=timeout, interval=1, what=f"{services} to be healthy")
        except AssertionError as error:
            raise AssertionError(f"{error}\n{self.diagnosis()}") from None

    def diagnosis(self) -> str:
        """The state of every container and the end of each service's log, for a failure's message."""
        states = json.dumps({service: [(row["Name"], row["State"], row.get("Health"), row.get("ExitCode"))
                                       for row in rows] for service, rows in self.states().items()}, indent=1)
        logs = self.compose("logs", "--no-color", "--tail", "15", check=False).stdout
        return f"states: {states}\nlogs:\n{logs[-12000:]}"

    def exec(self, service: str, *argv: str, timeout: float = 120,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        flags = [flag for name, value in (env or {}).items() for flag in ("-e", f"{name}={value}")]
        return self.compose("exec", "-T", *flags, service, *argv, timeout=timeout)

    def manage(self, *args: str, timeout: float = 120) -> str:
        """A manage.py command run in the web container, as an operator runs one."""
        return self.exec("web", "python", "manage.py", *args, timeout=timeout).stdout

    def sql(self, query: str) -> list[list[str]]:
        """Rows of a query run by psql in the database container (every value as text)."""
        psql = 'psql -v ON_ERROR_STOP=1 -At -F "\t" -U "$POSTGRES_USER" -d "$POSTGRES_DB" -c "$0"'
        out = self.exec("db", "sh", "-c", psql, query).stdout
        return [line.split("\t") for line in out.splitlines() if line]

    def rabbitmqctl(self, *args: str) -> str:
        """rabbitmqctl on the first node, as an operator runs it in its container."""
        return self.exec("rabbitmq", "rabbitmqctl", "-q", *args, timeout=120).stdout

    def count(self, query: str) -> int:
        """The one number a counting query returns."""
        return int(self.sql(query)[0][0])

    def queue_consumers(self, queue: str) -> int:
        """Consumers of a queue, as the first RabbitMQ node reports them."""
        rows = json.loads(self.rabbitmqctl("list_queues", "name", "consumers", "--formatter", "json"))
        return next((int(row["consumers"]) for row in rows if row["name"] == queue), 0)

    def scale(self, service: str, replicas: int) -> None:
        """`docker compose up -d --scale service=N`, leaving the other containers as they are."""
        self.up("--scale", f"{service}={replicas}", "--no-recreate", service)

    def refresh_all(self) -> int:
        """`manage.py refresh_all` in the web container; the id of the run its task started."""
        task_id = re.search(r"enqueued as task (\S+)", self.manage("refresh_all")).group(1)
        rows = wait_for(lambda: self.sql(f"SELECT id FROM weather_refreshrun WHERE task_id = '{task_id}'"),
                        timeout=60, interval=0.5, what="the refresh to start its run")
        return int(rows[0][0])

    def wait_for_run(self, run_id: int, timeout: float = 180) -> dict:
        """Until every batch of a refresh run is done or failed; the batches' totals and the workers that ran them."""
        def finished() -> dict | None:
            (total,) = self.sql(f"SELECT batches_total FROM weather_refreshrun WHERE id = {run_id}")[0]
            rows = self.sql("SELECT status, refreshed, failed, worker FROM weather_refreshbatch"
                            f" WHERE run_id = {run_id}")
            if len(rows) != int(total) or any(status == "pending" for status, *_ in rows):
                return None
            return {"batches": len(rows), "refreshed": sum(int(r[1]) for r in rows),
                    "failed": sum(int(r[2]) for r in rows), "workers": {r[3] for r in rows}}

        return wait_for(finished, timeout=timeout, interval=1, what=f"refresh run {run_id} to finish")

    def units_applied_twice(self) -> int:
        """Units of work whose effect the ledger saw committed more than once (weather.effects.applied_twice)."""
        return self.count("SELECT count(*) FROM (SELECT kind, unit FROM weather_effect WHERE applied"
                          " GROUP BY 1, 2 HAVING count(*) > 1) d")

    def crash(self, container: str) -> None:
        """SIGKILL the container's main process from the host, as the kernel's OOM killer would.

        Not `docker kill`: Docker records that as a deliberate stop, and a restart policy of
        `unless-stopped` then leaves the container down.
        """
        pid = self.inspect(container)["State"]["Pid"]
        if not pid:
            raise AssertionError(f"{container} is not running")
        os.kill(pid, signal.SIGKILL)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.edge_port}{path}"

    def request(self, method: str, path: str, data: bytes | None = None, headers: dict[str, str] | None = None,
                opener: urllib.request.OpenerDirector | None = None, timeout: float = 15) -> tuple[int, bytes, Message]:
        """One HTTP request through the edge's published port: status, body, headers (looked up in any case)."""
        request = urllib.request.Request(self.url(path), data=data, method=method, headers=headers or {})
        open_ = (opener or urllib.request.build_opener(_NoRedirect)).open
        try:
            with open_(request, timeout=timeout) as response:
                return response.status, response.read(), response.headers
        except urllib.error.HTTPError as error:
            return error.code, error.read(), error.headers

    def json(self, method: str, path: str, **kwargs: object) -> tuple[int, dict]:
        status, body, _ = self.request(method, path, **kwargs)
        return status, json.loads(body or b"{}")

    def staff_opener(self, username: str = "ops") -> urllib.request.OpenerDirector:
        """A browser session logged in through the admin's login form as a staff user made for it."""
        password = secrets.token_urlsafe(12)
        self.exec("web", "python", "manage.py", "createsuperuser", "--noinput", "--username", username,
                  "--email", f"{username}@example.invalid", env={"DJANGO_SUPERUSER_PASSWORD": password})
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()), _NoRedirect)
        status, body, _ = self.request("GET", "/admin/login/", opener=opener)
        assert status == 200, status
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', body).group(1).decode()
        form = urllib.parse.urlencode({"csrfmiddlewaretoken": token, "username": username, "password": password,
                                       "next": "/admin/"}).encode()
        status, _, headers = self.request("POST", "/admin/login/", data=form, opener=opener,
                                          headers={"Content-Type": "application/x-www-form-urlencoded",
                                                   "Referer": self.url("/admin/login/")})
        assert (status, headers.get("Location")) == (302, "/admin/"), "the staff login was refused"
        return opener

    def simulator(self, path: str, body: dict | None = None) -> dict:
        """The simulator's control API, through its port published on the host's loopback."""
        if self._simulator_port is None:
            published = self.compose("port", "simulator", str(SIMULATOR_PORT)).stdout.strip()
            self._simulator_port = published.rsplit(":", 1)[1]
        port = self._simulator_port
        # Reading the counters is a GET; every change (reset, config, script) a POST.
        data = None if path.endswith("/stats") else json.dumps(body or {}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def down(self) -> None:
        """`docker compose down`: containers and network go, volumes (the data) stay."""
        self._simulator_port = None
        self.compose("down", "--remove-orphans", "--timeout", "10")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are answers to check, not to follow."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def write_stack_folder(folder: Path, env_text: str) -> None:
    """The files a user has beside docker-compose.yml, plus the stand-in override."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in STACK_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, folder / name, dirs_exist_ok=True)
        else:
            shutil.copy(source, folder / name)
    shutil.copy(STANDINS_DIR / "compose.yml", folder / "standins.yml")
    (folder / ".env").write_text(env_text)


@contextlib.contextmanager
def compose_stack(folder: Path, broker: str, env: dict[str, str] | None = None,
                  profiles: list[str] | None = None) -> Iterator[ComposeStack]:
    """A stack's folder and project, ready for `up`; everything it ran is removed on exit."""
    ensure_all([broker])
    if image_digest(APP_IMAGE) is None:
        raise EngineUnavailableError(f"build {APP_IMAGE} first (build_app_image)")
    edge_port, flower_port = free_port(), free_port()
    settings = {"EDGE_PUBLISHED_PORT": str(edge_port), "FLOWER_PUBLISHED_PORT": str(flower_port),
                "WEATHER_API_URL": f"http://simulator:{SIMULATOR_PORT}/v1/forecast",
                # The generation the stand-in broker is, stated as a user of that broker states it.
                "RABBITMQ_GENERATION": broker, **(env or {})}
    env_text = stack_env(settings)
    if "cluster" in (profiles or []):
        # What the example tells a user to do for the cluster profile: list every node.
        example = re.search(r"^# (CELERY_BROKER_URL=\S+)$", env_text, re.MULTILINE).group(1)
        env_text = re.sub(r"^CELERY_BROKER_URL=.*$", example, env_text, flags=re.MULTILINE)
    write_stack_folder(folder, env_text)
    stack = ComposeStack(folder, f"fbrain-test-{secrets.token_hex(3)}", broker, edge_port, flower_port,
                         profiles=list(profiles or []))
    try:
        yield stack
    finally:
        # Every profile, so a service started under one is removed too.
        stack.profiles = ["cluster", "monitoring"]
        stack.compose("down", "--remove-orphans", "--volumes", "--timeout", "5", timeout=COMPOSE_TIMEOUT_S, check=False)
        leftovers = _docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={stack.project}").stdout.split()
        if leftovers:
            _docker("rm", "-f", "-v", *leftovers, timeout=120)
