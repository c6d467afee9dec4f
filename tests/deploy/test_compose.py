"""`docker compose up`, for real: the image and the compose file on a real Docker engine, on RabbitMQ 4.

The stack is driven as a user drives it (`.env` from `.env.example`, `docker compose`
commands, HTTP through the edge's published port), with test stand-ins for the official
images (tools/standins/) and the Open-Meteo simulator as the provider. Every scenario
runs on RabbitMQ 4, what docker-compose.yml runs. A 3.x stack (a 3.x image and
RABBITMQ_GENERATION=3) is left out of CI for its time (about a minute and a half): the
rest of the suite runs on the machine's 3.10, and COMPOSE_GENERATIONS=4,3 brings it back
for the first scenario. The tests share one stack per broker generation and run in order;
each sets up the state it needs. Everything a stack started is removed when its tests end.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from tools.compose_stack import AppImage, ComposeStack, compose_stack
from tools.faults import FROZEN, busiest_minute
from tools.harness import wait_for
from weather.quota import Consumer, QuotaLimits
from workers.pools import load_pools

# A stack takes a minute or two to come up, and some scenarios wait out crashes and restarts.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

CITIES = 240
BATCH_SIZE = 20
BATCHES = CITIES // BATCH_SIZE
# Compose's default services: the Python roles, the edge and what they stand on.
SERVICES = ["db", "rabbitmq", "web", "edge", "worker-interactive", "worker-bulk", "worker-maintenance", "beat",
            "simulator"]
STACK_ENV = {"DEMO_CITIES": str(CITIES), "WEATHER_BATCH_SIZE": str(BATCH_SIZE),
             # Short heartbeats: a crashed container's broker connection is noticed in seconds.
             "BROKER_HEARTBEAT_S": "4"}


ON_RABBITMQ_4 = pytest.mark.parametrize("stack", ["4"], ids=["rabbitmq4"], indirect=True)
# The generations the first scenario (up to a click) runs on: 4 in CI; COMPOSE_GENERATIONS=4,3 adds 3.x.
GENERATIONS = os.environ.get("COMPOSE_GENERATIONS", "4").split(",")
ON_EACH_GENERATION = pytest.mark.parametrize("stack", GENERATIONS, ids=[f"rabbitmq{g}" for g in GENERATIONS],
                                             indirect=True)


@pytest.fixture(scope="module")
def stack(request, app_image: AppImage, tmp_path_factory) -> Iterator[ComposeStack]:
    """The default stack (no profile), up and healthy, on RabbitMQ of one generation."""
    with compose_stack(tmp_path_factory.mktemp(f"compose-{request.param}"), request.param, env=STACK_ENV) as made:
        made.up()
        made.wait_healthy(SERVICES)
        yield made


def _task_state(stack: ComposeStack, status_url: str) -> str:
    status, body = stack.json("GET", status_url)
    assert status == 200, (status, body)
    return body["state"]


@ON_EACH_GENERATION
def test_up_starts_every_service_healthy_with_data_and_a_click_through_the_edge_succeeds(stack):
    states = stack.states()
    (migrate,) = states["migrate"]
    assert (migrate["State"], migrate["ExitCode"]) == ("exited", 0), migrate
    for service in SERVICES:
        for container in states[service]:
            assert container["State"] == "running", container
            # Beat serves no port and has no check of its own; every other service is healthy by its own.
            assert container["Health"] == ("" if service == "beat" else "healthy"), container
    # The image runs as its non-root user.
    assert stack.exec("web", "id", "-u").stdout.strip() == "10001"

    # The release step loaded the cities and queued their first refresh: the dashboard has data.
    status, page = stack.json("GET", "/api/cities/?page_size=1")
    assert (status, page["count"]) == (200, CITIES), page
    wait_for(lambda: stack.count("SELECT count(DISTINCT city_id) FROM weather_weatherdata") == CITIES, timeout=120,
             interval=1, what="the warm-up refresh to store a reading for every city")

    city_id = page["results"][0]["id"]
    status, accepted = stack.json("POST", f"/api/cities/{city_id}/refresh")
    assert status == 202, accepted
    wait_for(lambda: _task_state(stack, accepted["status_url"]) == "SUCCESS", timeout=30, interval=0.3,
             what="the click's task to succeed")
    status, wrong = stack.json("POST", "/api/cities/999999/refresh")
    assert status == 404, wrong

    # Pages and their static files through the edge (hashed names from the manifest, served by WhiteNoise).
    staff = stack.staff_opener()
    for path, opener in (("/", None), ("/api/docs", None), ("/ops/", staff)):
        status, body, _ = stack.request("GET", path, opener=opener)
        assert status == 200, (path, status)
        assets = set(re.findall(rb'(?:src|href)="(/static/[^"]+)"', body))
        assert assets, f"{path} names no static file"
        for asset in assets:
            asset_status, content, _ = stack.request("GET", asset.decode())
            assert (asset_status, bool(content)) == (200, True), (path, asset)
    status, _, headers = stack.request("GET", "/ops/")
    assert (status, headers.get("Location", "").startswith("/admin/login/")) == (302, True), "ops is for staff"


@ON_RABBITMQ_4
def test_three_bulk_containers_share_a_refresh_of_every_city_within_the_quota(stack):
    stack.scale("worker-bulk", 3)
    stack.wait_healthy(["worker-bulk"])
    wait_for(lambda: stack.queue_consumers("bulk") == 3, timeout=60, interval=1, what="three bulk consumers")
    hosts = {stack.inspect(c)["Config"]["Hostname"] for c in stack.containers("worker-bulk")}
    started = time.time()

    run = stack.wait_for_run(stack.refresh_all())
    assert (run["batches"], run["refreshed"], run["failed"]) == (BATCHES, CITIES, 0), run
    # Every container ran batches of the run: the worker that finished each batch is in its row.
    assert run["workers"] == {f"bulk@{host}" for host in hosts}, (run["workers"], hosts)
    assert stack.units_applied_twice() == 0
    # Within the quota: in no minute did the bulk lane take more than its share of the provider's limit.
    grants = [(datetime.fromtimestamp(float(at), UTC), int(n)) for at, n in stack.sql(
        f"SELECT extract(epoch FROM granted_at), locations FROM weather_quotagrant"
        f" WHERE consumer = 'bulk' AND granted_at >= to_timestamp({started - 60})")]
    # The stack's .env leaves the quota at its defaults, the provider's free tier, as these settings do.
    cap = QuotaLimits.from_settings().cap("minute", Consumer.BULK)
    assert sum(n for at, n in grants if at.timestamp() >= started) >= CITIES, "every city's locations were granted"
    assert busiest_minute(grants) <= cap
    stack.scale("worker-bulk", 1)


@ON_RABBITMQ_4
def test_a_bulk_container_crashed_mid_refresh_loses_nothing_and_is_restarted(stack):
    stack.scale("worker-bulk", 2)
    wait_for(lambda: stack.queue_consumers("bulk") == 2, timeout=90, interval=1, what="two bulk consumers")
    stack.simulator("/__sim/reset")
    stack.simulator("/__sim/config", {"latency_ms": 4000, "fixed_time": FROZEN})
    run_id = stack.refresh_all()
    # Both containers' slots at the provider (4 s a request): each holds running and prefetched batches.
    wait_for(lambda: stack.simulator("/__sim/stats")["requests"] >= 4, timeout=60, interval=0.2,
             what="every bulk slot to be at the provider")
    victim = stack.containers("worker-bulk")[0]
    restarts = stack.inspect(victim)["RestartCount"]
    stack.crash(victim)

    run = stack.wait_for_run(run_id, timeout=240)
    assert (run["batches"], run["refreshed"], run["failed"]) == (BATCHES, CITIES, 0), run
    # The crash cut batches short at the provider: they were asked for again, not lost.
    assert stack.simulator("/__sim/stats")["requests"] > BATCHES
    assert stack.units_applied_twice() == 0
    # The restart policy brought the container back.
    wait_for(lambda: stack.inspect(victim)["RestartCount"] > restarts and stack.inspect(victim)["State"]["Running"],
             timeout=60, interval=1, what="the crashed container to be restarted")
    stack.simulator("/__sim/reset")
    stack.scale("worker-bulk", 1)


@ON_RABBITMQ_4
def test_an_interactive_container_crashed_mid_click_loses_nothing_and_is_restarted(stack):
    stack.simulator("/__sim/reset")
    stack.simulator("/__sim/config", {"latency_ms": 4000, "fixed_time": FROZEN})
    (city_id,) = stack.sql("SELECT id FROM weather_city ORDER BY id LIMIT 1")[0]
    status, accepted = stack.json("POST", f"/api/cities/{city_id}/refresh")
    assert status == 202, accepted
    wait_for(lambda: stack.simulator("/__sim/stats")["requests"] >= 1, timeout=30, interval=0.1,
             what="the click's fetch to be at the provider")
    (victim,) = stack.containers("worker-interactive")
    restarts = stack.inspect(victim)["RestartCount"]
    stack.crash(victim)
    stack.simulator("/__sim/config", {"latency_ms": 0})

    wait_for(lambda: _task_state(stack, accepted["status_url"]) == "SUCCESS", timeout=120, interval=0.5,
             what="the click to succeed after the crash")
    assert stack.simulator("/__sim/stats")["requests"] >= 2, "the fetch cut short was run again"
    assert stack.units_applied_twice() == 0
    assert stack.inspect(victim)["RestartCount"] > restarts
    stack.wait_healthy(["worker-interactive"])
    stack.simulator("/__sim/reset")


@ON_RABBITMQ_4
def test_stopping_the_bulk_pool_mid_batch_ends_within_its_grace_and_the_batch_is_not_lost(stack):
    grace = int(stack_service(stack, "worker-bulk")["stop_grace_period"].removesuffix("s"))
    assert grace > load_pools({})["bulk"].drain_seconds
    stack.simulator("/__sim/reset")
    stack.simulator("/__sim/config", {"latency_ms": 3000, "fixed_time": FROZEN})
    run_id = stack.refresh_all()
    wait_for(lambda: stack.simulator("/__sim/stats")["requests"] >= 1, timeout=60, interval=0.2,
             what="a batch to be at the provider")
    (container,) = stack.containers("worker-bulk")
    stack.compose("stop", "worker-bulk", timeout=grace + 30)
    state = stack.inspect(container)["State"]
    # Within its grace: Celery's warm shutdown let the running batches finish and the worker
    # exit by itself; Docker, had the grace run out, would have SIGKILLed it (exit 137).
    assert state["ExitCode"] != 137, state
    pending = stack.count(f"SELECT count(*) FROM weather_refreshbatch WHERE run_id = {run_id} AND status = 'pending'")
    assert pending > 0, "the stop came before the run's end: batches wait in the queue"

    stack.simulator("/__sim/config", {"latency_ms": 0})
    stack.up("worker-bulk")
    run = stack.wait_for_run(run_id)
    assert (run["batches"], run["refreshed"], run["failed"]) == (BATCHES, CITIES, 0), run
    assert stack.units_applied_twice() == 0
    stack.simulator("/__sim/reset")


def stack_service(stack: ComposeStack, service: str) -> dict:
    """A service as `docker compose config` renders it from the stack's files."""
    return json.loads(stack.compose("config", "--format", "json").stdout)["services"][service]


def _beat_sends(stack: ComposeStack, entry: str) -> list[tuple[str, datetime]]:
    """(container, time) of every "Sending due task <entry>" line the beats logged."""
    sends = []
    for line in stack.compose("logs", "--no-color", "beat").stdout.splitlines():
        match = re.match(rf"^(\S+)\s+\|\s+(\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d),\d+ .*Sending due task {entry} ", line)
        if match:
            sends.append((match.group(1), datetime.fromisoformat(match.group(2))))
    return sends


@ON_RABBITMQ_4
def test_two_beats_send_each_slot_once(stack):
    every = 5
    entry = "compose-lease-probe"
    stack.scale("beat", 2)
    stack.manage("shell", "-c", (
        "from django_celery_beat.models import IntervalSchedule, PeriodicTask;"
        f"every, _ = IntervalSchedule.objects.get_or_create(every={every}, period='seconds');"
        f"PeriodicTask.objects.create(name='{entry}', task='weather.tasks.cleanup_old_weather_data',"
        f" interval=every, expire_seconds=60)"))
    try:
        sends = wait_for(lambda: len(found := _beat_sends(stack, entry)) >= 4 and found, timeout=90, interval=1,
                         what="four sends of the probe entry")
        assert len(stack.containers("beat")) == 2
        assert len({container for container, _ in sends}) == 1, f"only the leader sends: {sends}"
        times = sorted(at for _, at in sends)
        gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(times)]
        assert min(gaps) >= every * 0.5, f"one send a slot: {gaps}"
    finally:
        stack.manage("shell", "-c", "from django_celery_beat.models import PeriodicTask;"
                                    f"PeriodicTask.objects.filter(name='{entry}').delete()")
        stack.scale("beat", 1)


@ON_RABBITMQ_4
def test_down_then_up_keeps_the_data_and_a_schedule_edited_in_the_admin(stack):
    staff = stack.staff_opener("admin-editor")
    (task_id, enabled) = stack.sql("SELECT id, enabled FROM django_celery_beat_periodictask"
                                   " WHERE name = 'cleanup_old_data'")[0]
    assert enabled == "t"
    # The admin's own "disable" action on the periodic tasks' list, as an operator clicks it.
    listing = "/admin/django_celery_beat/periodictask/"
    status, body, _ = stack.request("GET", listing, opener=staff)
    assert status == 200, status
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', body).group(1).decode()
    form = urllib.parse.urlencode({"csrfmiddlewaretoken": token, "action": "disable_tasks",
                                   "_selected_action": task_id, "index": "0"}).encode()
    status, _, _ = stack.request("POST", listing, data=form, opener=staff,
                                 headers={"Content-Type": "application/x-www-form-urlencoded",
                                          "Referer": stack.url(listing)})
    assert status == 302, status
    assert stack.sql(f"SELECT enabled FROM django_celery_beat_periodictask WHERE id = {task_id}") == [["f"]]
    readings = stack.count("SELECT count(*) FROM weather_weatherdata")

    stack.down()
    assert not stack.containers("web", all_states=True)
    stack.up()
    stack.wait_healthy(SERVICES)
    assert stack.count("SELECT count(*) FROM weather_city") == CITIES
    assert stack.count("SELECT count(*) FROM weather_weatherdata") >= readings
    # Neither the release step nor beat's seeding put the edited entry back.
    assert stack.sql(f"SELECT enabled FROM django_celery_beat_periodictask WHERE id = {task_id}") == [["f"]]
    status, page = stack.json("GET", "/api/cities/?page_size=1")
    assert page["results"][0]["latest"] is not None


@ON_RABBITMQ_4
def test_the_monitoring_profile_serves_flower_behind_basic_auth_with_the_three_pools(stack):
    stack.profiles = ["monitoring"]
    try:
        stack.up("flower")
        stack.wait_healthy(["flower"])
        base = f"http://127.0.0.1:{stack.flower_port}"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{base}/api/workers", timeout=10)
        assert refused.value.code == 401
        env_file = (stack.folder / ".env").read_text()
        credentials = re.search(r"^FLOWER_BASIC_AUTH=(\S+)$", env_file, re.MULTILINE).group(1)
        authorization = {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}

        def pools() -> set[str]:
            request = urllib.request.Request(f"{base}/api/workers?refresh=1", headers=authorization)
            with urllib.request.urlopen(request, timeout=30) as response:
                return {name.split("@")[0] for name in json.load(response)}

        assert wait_for(lambda: pools() >= set(load_pools({})), timeout=60, interval=2, what="Flower to list the pools")
    finally:
        stack.compose("rm", "--stop", "--force", "flower", check=False)
        stack.profiles = []
