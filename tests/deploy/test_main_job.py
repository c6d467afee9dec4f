"""The README's first command, for real: `scripts/run` brings up web, every pool and beat from the Procfile.

It runs on SQLite in a temporary folder, once on a RabbitMQ vhost of its own (so
the pools the other tests start cannot stand in for the ones `scripts/run`
started) and once on the filesystem fallback a machine without RabbitMQ gets.
"""

import contextlib
import http.cookiejar
import json
import os
import re
import shutil
import signal
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from routing import LANE_NAMES
from tools.harness import ROOT, wait_for
from tools.web_tier import free_port

pytestmark = pytest.mark.integration

VHOST = "f_brain_main_job"


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


def _honcho_lines(text: str) -> dict[str, list[str]]:
    """What each Procfile process wrote, by process ("web", "interactive", ...), from honcho's prefixed output."""
    lines: dict[str, list[str]] = {}
    for line in text.splitlines():
        match = re.match(r"^\d\d:\d\d:\d\d (\w+)\.\d+\s+\| (.*)$", line)
        if match:
            lines.setdefault(match.group(1), []).append(match.group(2))
    return lines


def _login(base: str, username: str, password: str) -> urllib.request.OpenerDirector:
    """A browser-like client holding a staff session (the admin's login form, with its CSRF token)."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    form = opener.open(f"{base}/admin/login/", timeout=5).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
    body = urllib.parse.urlencode({"csrfmiddlewaretoken": token, "username": username, "password": password,
                                   "next": "/ops/"}).encode()
    opener.open(urllib.request.Request(f"{base}/admin/login/", data=body, headers={"Referer": f"{base}/admin/login/"}),
                timeout=5)
    return opener


@pytest.fixture(params=["rabbitmq", "filesystem"])
def broker(request):
    """RabbitMQ on a vhost only this test's processes use (deleted afterwards), or the filesystem fallback."""
    if request.param == "filesystem":
        yield "filesystem://"
        return
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("needs rabbitmqctl for a vhost of its own")
    listed = subprocess.run(["rabbitmqctl", "-q", "list_vhosts"], capture_output=True, text=True, timeout=60)
    if VHOST not in listed.stdout.split():
        _rabbitmqctl("add_vhost", VHOST)
    _rabbitmqctl("set_permissions", "-p", VHOST, "guest", ".*", ".*", ".*")
    yield f"amqp://guest:guest@127.0.0.1:5672/{VHOST}"
    _rabbitmqctl("delete_vhost", VHOST)


def test_scripts_run_starts_the_whole_topology_and_serves_a_refresh(broker, tmp_path: Path):
    port, sim_port = free_port(), free_port()
    fallback = broker == "filesystem://"
    env = {
        "PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", str(tmp_path)), "LANG": "C.UTF-8",
        "CELERY_BROKER_URL": broker, "VAR_DIR": str(tmp_path / "var"), "PORT": str(port),
        "SIMULATOR_PORT": str(sim_port), "DEMO_CITIES": "20", "WEB_CONCURRENCY": "1",
        "PYTHONUNBUFFERED": "1",
        # On RabbitMQ the run logs JSON, one object a line from every process; the fallback keeps text.
        "LOG_FORMAT": "text" if fallback else "json",
    }
    log = open(tmp_path / "run.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen([str(ROOT / "scripts" / "run")], cwd=ROOT, env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    def manage(*args: str) -> subprocess.CompletedProcess:
        # As the run's banner tells an operator to: DEBUG on, and the broker generation it read from the broker.
        banner = (tmp_path / "run.log").read_text()
        stated = re.search(r"RABBITMQ_GENERATION=(\d)", banner)
        shared = re.search(r"PROMETHEUS_MULTIPROC_DIR=(\S+)", banner)
        manage_env = {**env, "DEBUG": "true", "RABBITMQ_GENERATION": stated.group(1) if stated else "",
                      "PROMETHEUS_MULTIPROC_DIR": shared.group(1) if shared else ""}
        return subprocess.run([str(ROOT / ".venv/bin/python"), "manage.py", *args], cwd=ROOT, env=manage_env,
                              capture_output=True, text=True, timeout=60)

    tree: list[int] = []
    try:
        def ready() -> bool:
            assert process.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            try:
                return _get(f"{base}/readyz")[0] == 200
            except OSError:
                return False

        wait_for(ready, timeout=120, interval=0.5, what="scripts/run to answer /readyz")
        # Every lane has its consumer: the pools that scripts/run started, on this broker only.
        result = wait_for(lambda: (r := manage("topology", "--check")).returncode == 0 and r, timeout=60,
                          interval=1, what="topology --check to pass")
        assert "topology check passed" in result.stdout
        # A newcomer sees data at once: the first run warmed every demo city through the bulk lane.
        warmed = wait_for(lambda: all((c := _get(f"{base}/api/cities/?page_size=20")[1])["results"][i]["latest"]
                                      for i in range(20)) and c, timeout=60, interval=0.5,
                          what="the warm-up to store a reading for every demo city")
        assert warmed["count"] == 20

        city_id = warmed["results"][0]["id"]
        status, accepted = _post(f"{base}/api/cities/{city_id}/refresh")
        assert status == 202
        done = wait_for(lambda: (b := _get(base + accepted["status_url"])[1])["state"] in ("SUCCESS", "FAILURE")
                        and b, timeout=60, interval=0.3, what="the refresh to finish")
        assert done["state"] == "SUCCESS", done
        assert _get(f"{base}/api/cities/{city_id}")[1]["latest"]["temperature"] == done["result"]["temperature"]
        # The simulator is the tools' one, and the web server serves the admin's stylesheet (WhiteNoise).
        assert "weather simulator serving" in (tmp_path / "var" / "simulator.log").read_text()
        with urllib.request.urlopen(f"{base}/admin/login/", timeout=5) as response:
            login = response.read().decode()
        stylesheet = re.search(r'href="(/static/admin/css/base(?:\.[0-9a-f]+)?\.css)"', login)
        assert stylesheet, "the admin's stylesheet is not linked"
        with urllib.request.urlopen(base + stylesheet.group(1), timeout=5) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/css")

        if fallback:
            # Consumers cannot be counted on this transport: said as unknown everywhere, never as 0.
            assert "consumers=unknown" in result.stdout
            doctor = [json.loads(line) for line in manage("doctor", "--json").stdout.splitlines()]
            lanes = {f["check"]: f for f in doctor if f["check"] in {f"lane {lane}" for lane in LANE_NAMES}}
            assert len(lanes) == len(LANE_NAMES), doctor
            assert all(f["status"] == "warn" and "consumers unknown" in f["saw"] for f in lanes.values()), lanes
            made = manage("shell", "-c", "from django.contrib.auth.models import User; "
                                         "User.objects.create_superuser('ops', password='ops-password-1')")
            assert made.returncode == 0, made.stderr
            page = _login(base, "ops", "ops-password-1").open(f"{base}/ops/", timeout=10).read().decode()
            assert page.count("unknown (this broker transport does not count them)") == len(LANE_NAMES)
        else:
            _assert_one_click_followed_across_processes((tmp_path / "run.log").read_text(), accepted["task_id"])
            # A healthy fresh start, warm-up burst and all: doctor, run as the banner says, warns of nothing.
            doctor = manage("doctor", "--json")
            assert doctor.returncode == 0, doctor.stdout + doctor.stderr
            unhealthy = [line for line in map(json.loads, doctor.stdout.splitlines()) if line["status"] != "ok"]
            assert unhealthy == [], unhealthy
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
    assert len(tree) >= 3 + len(LANE_NAMES), f"web, every pool, beat and the simulator, at least: {tree}"


def _assert_one_click_followed_across_processes(run_log: str, task_id: str) -> None:
    """LOG_FORMAT=json: every process writes JSON lines, and the click's request id is on its worker's lines."""
    by_process = _honcho_lines(run_log)
    assert {"web", "interactive", "bulk", "maintenance", "beat"} <= set(by_process), sorted(by_process)
    records: dict[str, list[dict]] = {}
    for name, lines in by_process.items():
        if name == "system":  # honcho's own lines (started, stopped)
            continue
        for line in lines:
            try:
                records.setdefault(name, []).append(json.loads(line))
            except ValueError:
                raise AssertionError(f"{name} wrote a line that is not JSON: {line!r}") from None
    assert any(r["message"].startswith("beat: Starting") for r in records["beat"])
    access = [r for r in records["web"] if r["logger"] == "f_brain.access" and r.get("method") == "POST"
              and r.get("status") == 202]
    assert len(access) == 1, access
    request_id = access[0]["request_id"]
    assert request_id
    of_the_task = [r for r in records["interactive"] if r["task_id"] == task_id]
    assert of_the_task, "the worker's lines of the fetch name its task"
    assert all(r["request_id"] == request_id and r["lane"] == "interactive" and r["retries"] == 0
               and r["task_name"] == "weather.tasks.fetch_weather_for_city" for r in of_the_task), of_the_task
    assert any("succeeded" in r["message"] for r in of_the_task)
