"""Operator surfaces: the ops page and its JSON, health and readiness, metrics."""

import os
import socket

import pytest
from celery import current_app as app
from django.contrib.auth.models import User
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from routing import Priority
from tests.factories import make_city
from tools.harness import purge_lanes, wait_for, within
from weather.dispatch import enqueue_city_fetch
from weather.models import PendingFetch
from weather.tasks import cleanup_old_weather_data
from workers.pools import load_pools

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def metrics_open(settings):
    """These scrapes come from the private network: /metrics open, as METRICS_OPEN=true says."""
    settings.METRICS_OPEN = True


@pytest.fixture
def staff(db):
    user = User.objects.create_user("operator", password="correct horse battery staple", is_staff=True)
    client = Client()
    client.force_login(user)
    return client


def test_ops_queues_reports_depth_and_consumers_from_rabbitmq(live, staff):
    purge_lanes()  # dead letters that earlier tests left on purpose
    live.stop("maintenance")
    try:
        for _ in range(3):
            cleanup_old_weather_data.delay()
        body = staff.get("/api/ops/queues").json()
        metrics = _samples(Client().get("/metrics").content.decode())
    finally:
        purge_lanes()
        live.start("maintenance")
    lanes = {lane["lane"]: lane for lane in body["lanes"]}
    assert (lanes["maintenance"]["depth"], lanes["maintenance"]["consumers"]) == (3, 0)
    # A backlog nothing consumes calls a replica up from zero, the same figure on both surfaces
    # as KEDA's formula (workers.pools.Pool.desired_replicas).
    maintenance = load_pools()["maintenance"]
    assert maintenance.min_replicas == 0
    assert lanes["maintenance"]["desired_replicas"] == maintenance.desired_replicas(3) == 1
    assert metrics[("f_brain_lane_desired_replicas", (("lane", "maintenance"),))] == 1
    for lane in ("interactive", "bulk"):
        pool = load_pools()[lane]
        assert lanes[lane]["desired_replicas"] == pool.desired_replicas(lanes[lane]["depth"])
    assert lanes["interactive"]["consumers"] == 1
    assert lanes["bulk"]["pool"]["prefetch_multiplier"] == 4
    # Celery's tasks and the Django tasks (weather/jobs.py), each on the lane it is routed to or names.
    # (This process may define Django tasks of its tests' own too.)
    assert {"weather.jobs.fetch_city", "weather.tasks.fetch_weather_for_city"} <= set(lanes["interactive"]["tasks"])
    assert {"weather.jobs.summarize_day", "weather.tasks.refresh_weather_batch"} <= set(lanes["bulk"]["tasks"])
    assert "weather.jobs.fetch_city" not in lanes["bulk"]["tasks"] + lanes["maintenance"]["tasks"]
    assert body["dead_letter"]["depth"] == 0
    page = staff.get("/ops/")
    assert page.status_code == 200
    assert b'data-lane="maintenance"' in page.content


def test_operator_views_answer_503_when_the_broker_is_away(staff, monkeypatch):
    monkeypatch.setitem(app.conf, "broker_read_url", "amqp://guest:guest@127.0.0.1:1//")
    with within(10, "the refusal of /api/ops/queues"):
        refused = staff.get("/api/ops/queues")
    assert refused.status_code == 503
    assert refused.json()["error"].startswith("broker unavailable")
    page = staff.get("/ops/")
    assert page.status_code == 503
    assert b"broker unavailable" in page.content


def test_operator_views_need_staff(live):
    assert Client().get("/ops/").status_code == 302  # to the admin login
    refused = Client().get("/api/ops/queues")
    assert refused.status_code == 403
    assert "staff only" in refused.json()["error"]


def _samples(text: str) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_parse_and_move_when_tasks_run(live, sim):
    key = ("f_brain_tasks_total", (("lane", "interactive"), ("state", "SUCCESS"),
                                   ("task", "weather.tasks.fetch_weather_for_city")))
    wait_key = ("f_brain_task_queue_wait_seconds_count", (("lane", "interactive"),))
    run_key = ("f_brain_task_runtime_seconds_count", (("lane", "interactive"),
                                                      ("task", "weather.tasks.fetch_weather_for_city")))
    before = _samples(Client().get("/metrics").content.decode())
    city = make_city()
    enqueue_city_fetch(city.pk, Priority.CLICK)
    wait_for(lambda: not PendingFetch.objects.exists(), what="the fetch")
    response = Client().get("/metrics")
    assert response["Content-Type"].startswith("text/plain")
    after = _samples(response.content.decode())
    assert after[key] == before.get(key, 0) + 1
    assert after[wait_key] == before.get(wait_key, 0) + 1
    assert after[run_key] == before.get(run_key, 0) + 1
    assert after[("f_brain_queue_consumers", (("lane", "interactive"),))] >= 1
    assert after[("f_brain_broker_up", ())] == 1
    # Files carry the host name: pools in containers sharing a volume repeat pids.
    files = os.listdir(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    assert files
    assert all(f"_{socket.gethostname()}-" in name for name in files), files


def test_every_doctor_check_is_a_gauge_on_metrics(live):
    from weather.ops.doctor.checkup import recent_findings
    from weather.ops.doctor.findings import SEVERITY

    gauges = {labels: value for (name, labels), value in _samples(Client().get("/metrics").content.decode()).items()
              if name == "f_brain_doctor_check"}
    findings = recent_findings()
    assert findings
    assert gauges == {(("check", f.check), ("symptom", f.symptom)): SEVERITY[f.status] for f in findings}
    assert set(gauges.values()) <= {0, 1, 2}


def test_health_and_readiness(live, monkeypatch):
    assert Client().get("/healthz").json() == {"status": "ok"}
    ready = Client().get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "broker": "ok"}
    monkeypatch.setitem(app.conf, "broker_read_url", "amqp://guest:guest@127.0.0.1:1//")
    with within(10, "/readyz's answer"):
        down = Client().get("/readyz")
    assert down.status_code == 503
    assert down.json()["checks"]["database"] == "ok"
    assert down.json()["checks"]["broker"].startswith("error")
