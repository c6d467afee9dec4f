"""The Procfile as a Procfile PaaS runs it: URLs only, `release` first, each process a dyno with PORT, then SIGTERM.

Each command runs under `bash -c`, as Heroku runs it. A dyno starts from the build with a
filesystem of its own: nothing a release step or another dyno wrote is there. Each
process here gets an empty VAR_DIR and a PORT, and the environment holds what a PaaS
gives: DATABASE_URL, a RabbitMQ add-on's URL, the app's secrets. The router terminates
TLS and says so in X-Forwarded-Proto. At shutdown the platform sends SIGTERM to every
process of a dyno and SIGKILL after its grace.
"""

import contextlib
import json
import os
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings

from tools.harness import ROOT, own_database, own_vhost, procfile, wait_for
from tools.web_tier import free_port

pytestmark = pytest.mark.integration

# Heroku's, and most Procfile platforms': SIGKILL this long after SIGTERM.
PLATFORM_GRACE_S = 30
ROUTER_HEADERS = {"X-Forwarded-Proto": "https"}


def _request(url: str, method: str = "GET") -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method, headers=ROUTER_HEADERS,
                                     data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


class Dynos:
    """Procfile processes started as a PaaS starts them, each in a process group (the dyno) of its own."""

    def __init__(self, base_env: dict[str, str], root: Path) -> None:
        self.base_env, self.root = base_env, root
        self.running: dict[str, subprocess.Popen] = {}

    def env(self, name: str) -> dict[str, str]:
        dyno = self.root / name
        dyno.mkdir()
        return {**self.base_env, "DYNO": f"{name}.1", "PORT": str(free_port()), "VAR_DIR": str(dyno / "var"),
                "HOME": str(dyno)}

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def run_once(self, name: str, command: str) -> subprocess.CompletedProcess:
        """A release step or a one-off dyno: runs to its end."""
        return subprocess.run(["/bin/bash", "-c", command], cwd=ROOT, env=self.env(name), capture_output=True,
                              text=True, timeout=180)

    def start(self, name: str, command: str) -> dict[str, str]:
        env = self.env(name)
        with open(self.root / f"{name}.log", "wb") as log:
            self.running[name] = subprocess.Popen(["/bin/bash", "-c", command], cwd=ROOT, env=env, stdout=log,
                                                  stderr=subprocess.STDOUT, start_new_session=True)
        return env

    def alive(self, name: str) -> bool:
        """Whether any process of the dyno is left (the shell, the launcher, a pool's children)."""
        group = self.running[name].pid
        found = subprocess.run(["pgrep", "-g", str(group)], capture_output=True, text=True).stdout.split()
        return any(not _zombie(int(pid)) for pid in found)

    def stop_all(self) -> dict[str, tuple[int | None, bool]]:
        """SIGTERM to every dyno at once, SIGKILL to what is left after the grace: (exit code, needed SIGKILL)."""
        for process in self.running.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        outcome = {}
        for name, process in self.running.items():
            try:
                wait_for(lambda n=name: not self.alive(n), timeout=PLATFORM_GRACE_S, interval=0.2,
                         what=f"the {name} dyno to stop")
                killed = False
            except AssertionError:
                killed = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            outcome[name] = (process.wait(timeout=10), killed)
        return outcome


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_the_procfile_runs_on_urls_alone_and_stops_within_the_platform_grace(simulator_server, tmp_path):
    with own_database("f_brain_paas") as database_url, own_vhost("f_brain_paas") as broker_url:
        base_env = {
            "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}", "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1",
            # What the platform and its add-ons set, and the app's own secrets: nothing named POSTGRES_*.
            "DATABASE_URL": database_url, "CLOUDAMQP_URL": broker_url,
            "SECRET_KEY": "paas-test-only-" + "s" * 20 + "0123456789abcdefghijklmnopqrstuvwxyz",
            "ALLOWED_HOSTS": "127.0.0.1", "SECURE_PROXY_SSL_HEADER": "true",
            "RABBITMQ_GENERATION": str(int(settings.RABBITMQ_GENERATION)),
            "WEATHER_API_URL": simulator_server.url, "WEB_CONCURRENCY": "1",
        }
        entries = procfile()
        dynos = Dynos(base_env, tmp_path)
        release = dynos.run_once("release", entries["release"])
        assert release.returncode == 0, release.stdout + release.stderr
        loaded = dynos.run_once("run", "python manage.py load_cities --limit 3")
        assert loaded.returncode == 0, loaded.stdout + loaded.stderr

        try:
            web = dynos.start("web", entries["web"])
            for name in entries.keys() - {"release", "web"}:
                dynos.start(name, entries[name])
            base = f"http://127.0.0.1:{web['PORT']}"

            def answers(path: str) -> int:
                assert dynos.running["web"].poll() is None, dynos.log("web")[-3000:]
                with contextlib.suppress(OSError):
                    return _request(base + path)[0]
                return 0

            wait_for(lambda: answers("/readyz") == 200, timeout=90, interval=0.5, what="the web dyno's /readyz")
            # The web dyno collected its own static files: the release step's would not be on its filesystem.
            login = _request(f"{base}/admin/login/")[1].decode()
            stylesheet = login.split('href="/static/admin/css/base.', 1)[1].split('"', 1)[0]
            assert _request(f"{base}/static/admin/css/base.{stylesheet}")[0] == 200
            assert not (tmp_path / "release" / "var" / "static").exists()

            cities = json.loads(_request(f"{base}/api/cities/?page_size=3")[1])
            assert cities["count"] == 3
            status, body = _request(f"{base}/api/cities/{cities['results'][0]['id']}/refresh", method="POST")
            assert status == 202, body
            status_url = base + json.loads(body)["status_url"]
            done = wait_for(lambda: (s := json.loads(_request(status_url)[1]))["state"] in ("SUCCESS", "FAILURE")
                            and s, timeout=60, interval=0.3, what="the interactive dyno to run the refresh")
            assert done["state"] == "SUCCESS", done
            wait_for(lambda: "leads: it sends the periodic tasks" in dynos.log("beat"), timeout=60,
                     what="the beat dyno to take the lease")
            for name in dynos.running:
                assert dynos.running[name].poll() is None, f"{name} exited early:\n{dynos.log(name)[-3000:]}"
        finally:
            outcome = dynos.stop_all()
        # Every dyno stopped on SIGTERM alone, cleanly, within the grace.
        assert {name: killed for name, (_, killed) in outcome.items()} == dict.fromkeys(outcome, False), outcome
        assert {name: code for name, (code, _) in outcome.items()} == dict.fromkeys(outcome, 0), {
            name: dynos.log(name)[-1500:] for name, (code, _) in outcome.items() if code}
