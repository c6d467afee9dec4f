"""The README's first command, for real: `scripts/run` brings up web, three pools and beat from the Procfile.

It runs on SQLite in a temporary folder and on a RabbitMQ vhost of its own, so the
pools the other tests start cannot stand in for the ones `scripts/run` started.
"""

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tools.harness import ROOT, wait_for

pytestmark = pytest.mark.integration

VHOST = "f_brain_main_job"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (honcho starts each Procfile process in a session of its own)."""
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [p for child in map(int, children) for p in (child, *_descendants(child))]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone in all but name.
    state = Path(f"/proc/{pid}/stat")
    return state.exists() and state.read_text().rsplit(")", 1)[-1].split()[0] != "Z"


def _post(url: str) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.load(response)


@pytest.fixture
def vhost():
    """A RabbitMQ vhost that only this test's processes use, deleted afterwards."""
    listed = subprocess.run(["rabbitmqctl", "-q", "list_vhosts"], capture_output=True, text=True, timeout=60)
    if VHOST not in listed.stdout.split():
        _rabbitmqctl("add_vhost", VHOST)
    _rabbitmqctl("set_permissions", "-p", VHOST, "guest", ".*", ".*", ".*")
    yield f"amqp://guest:guest@127.0.0.1:5672/{VHOST}"
    _rabbitmqctl("delete_vhost", VHOST)


@pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="needs rabbitmqctl for a vhost of its own")
def test_scripts_run_starts_the_whole_topology_and_serves_a_refresh(vhost, tmp_path: Path):
    port, sim_port = _free_port(), _free_port()
    env = {
        "PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", str(tmp_path)), "LANG": "C.UTF-8",
        "CELERY_BROKER_URL": vhost, "VAR_DIR": str(tmp_path / "var"), "PORT": str(port),
        "SIMULATOR_PORT": str(sim_port), "DEMO_CITIES": "20", "WEB_CONCURRENCY": "1",
        "PYTHONUNBUFFERED": "1",
    }
    log = open(tmp_path / "run.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen([str(ROOT / "scripts" / "run")], cwd=ROOT, env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    tree: list[int] = []
    try:
        def ready() -> bool:
            assert process.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            try:
                return _get(f"{base}/readyz")[0] == 200
            except OSError:
                return False

        wait_for(ready, timeout=120, interval=0.5, what="scripts/run to answer /readyz")
        # Every lane has its consumer: the three pools that scripts/run started, on this vhost only.
        check_env = {**env, "DEBUG": "true"}
        check = lambda: subprocess.run(  # noqa: E731
            [str(ROOT / ".venv/bin/python"), "manage.py", "topology", "--check"],
            cwd=ROOT, env=check_env, capture_output=True, text=True, timeout=60)
        result = wait_for(lambda: (r := check()).returncode == 0 and r, timeout=60, interval=1,
                          what="topology --check to pass")
        assert "topology check passed" in result.stdout

        status, cities = _get(f"{base}/api/cities/?page_size=1")
        assert (status, cities["count"]) == (200, 20)
        city_id = cities["results"][0]["id"]
        status, accepted = _post(f"{base}/api/cities/{city_id}/refresh")
        assert status == 202
        done = wait_for(lambda: (b := _get(base + accepted["status_url"])[1])["state"] in ("SUCCESS", "FAILURE")
                        and b, timeout=60, interval=0.3, what="the refresh to finish")
        assert done["state"] == "SUCCESS", done
        assert _get(f"{base}/api/cities/{city_id}")[1]["latest"]["temperature"] == done["result"]["temperature"]
        assert "beat: Starting..." in (tmp_path / "run.log").read_text()
        # The simulator is the tools' one, and gunicorn serves the admin's stylesheet (WhiteNoise).
        assert "weather simulator serving" in (tmp_path / "var" / "simulator.log").read_text()
        with urllib.request.urlopen(f"{base}/admin/login/", timeout=5) as response:
            login = response.read().decode()
        stylesheet = re.search(r'href="(/static/admin/css/base(?:\.[0-9a-f]+)?\.css)"', login)
        assert stylesheet, "the admin's stylesheet is not linked"
        with urllib.request.urlopen(base + stylesheet.group(1), timeout=5) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/css")
    finally:
        tree = _descendants(process.pid)
        # Ctrl+C in a terminal: the foreground group gets the signal; honcho stops the rest.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()
        try:
            wait_for(lambda: not any(map(_alive, tree)), timeout=30, what="every process to stop with scripts/run")
        finally:
            for pid in filter(_alive, tree):
                os.kill(pid, signal.SIGKILL)
    assert len(tree) >= 6, f"web, three pools, beat and the simulator, at least: {tree}"
