"""The interactive path: de-duplicated priority fetches, rate limits, operator views, health and metrics."""

import os
import socket
import threading
import time
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connections, transaction
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from routing import Priority
from server_config.celery import app
from tools.harness import purge_lanes, queue_depth, wait_for
from weather.charts import sparkline_points
from weather.dispatch import enqueue_city_fetch
from weather.models import PendingFetch, WeatherData
from weather.tasks import cleanup_old_weather_data

from .factories import make_cities, make_city

pytestmark = pytest.mark.integration


def _post_together(path: str, count: int) -> list:
    barrier = threading.Barrier(count)
    responses = [None] * count

    def post(i: int) -> None:
        try:
            barrier.wait()
            responses[i] = Client().post(path)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=post, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return responses


def test_simultaneous_requests_for_one_city_publish_one_message_with_one_id(live, sim):
    city = make_city()
    live.stop("interactive")
    try:
        responses = _post_together(f"/api/cities/{city.pk}/refresh", 2)
        assert [r.status_code for r in responses] == [202, 202]
        bodies = [r.json() for r in responses]
        assert bodies[0]["task_id"] == bodies[1]["task_id"]
        assert sorted(b["deduplicated"] for b in bodies) == [False, True]
        assert queue_depth("interactive") == 1
    finally:
        live.start("interactive")
    wait_for(lambda: WeatherData.objects.filter(city=city).exists(), what="the one fetch")
    wait_for(lambda: not PendingFetch.objects.exists(), what="the pending slot to be released")
    again = Client().post(f"/api/cities/{city.pk}/refresh").json()
    assert again["deduplicated"] is False
    assert again["task_id"] != bodies[0]["task_id"]
    wait_for(lambda: not PendingFetch.objects.exists(), what="the second fetch")


def test_a_rolled_back_transaction_publishes_nothing(live):
    city = make_city()
    live.stop("interactive")
    try:
        def failing_view() -> None:
            with transaction.atomic():
                enqueue_city_fetch(city.pk, Priority.CLICK)
                raise RuntimeError("the view failed after enqueueing")

        with pytest.raises(RuntimeError):
            failing_view()
        time.sleep(0.5)
        assert queue_depth("interactive") == 0
        assert not PendingFetch.objects.exists()
    finally:
        live.start("interactive")


def test_the_refresh_endpoint_rate_limits_per_client(live, settings):
    settings.REFRESH_RATE_LIMIT_PER_MINUTE = 3
    city = make_city()
    client = Client()
    statuses = [client.post(f"/api/cities/{city.pk}/refresh").status_code for _ in range(3)]
    assert statuses == [202, 202, 202]
    limited = client.post(f"/api/cities/{city.pk}/refresh")
    assert limited.status_code == 429
    assert 1 <= int(limited["Retry-After"]) <= 60
    assert "too many" in limited.json()["error"]
    other = Client(REMOTE_ADDR="10.0.0.7").post(f"/api/cities/{city.pk}/refresh")
    assert other.status_code == 202, "another client has its own budget"
    wait_for(lambda: not PendingFetch.objects.exists(), what="fetches to finish")


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
    finally:
        purge_lanes()
        live.start("maintenance")
    lanes = {lane["lane"]: lane for lane in body["lanes"]}
    assert (lanes["maintenance"]["depth"], lanes["maintenance"]["consumers"]) == (3, 0)
    assert lanes["interactive"]["consumers"] == 1
    assert lanes["bulk"]["pool"]["prefetch_multiplier"] == 4
    assert body["dead_letter"]["depth"] == 0
    page = staff.get("/ops/")
    assert page.status_code == 200
    assert b'data-lane="maintenance"' in page.content


def test_operator_views_answer_503_when_the_broker_is_away(staff, monkeypatch):
    monkeypatch.setitem(app.conf, "broker_read_url", "amqp://guest:guest@127.0.0.1:1//")
    started = time.monotonic()
    refused = staff.get("/api/ops/queues")
    assert time.monotonic() - started < 10
    assert refused.status_code == 503
    assert refused.json()["error"].startswith("broker unreachable")
    page = staff.get("/ops/")
    assert page.status_code == 503
    assert b"broker unreachable" in page.content


def test_operator_views_need_staff(live):
    assert Client().get("/ops/").status_code == 302  # to the admin login
    refused = Client().get("/api/ops/queues")
    assert refused.status_code == 403
    assert "staff only" in refused.json()["error"]


@pytest.mark.django_db
def test_api_errors_from_django_itself_are_json():
    bad_host = Client().get("/api/cities/", HTTP_HOST="evil.example")
    assert bad_host.status_code == 400
    assert bad_host.json()["error"] == "bad request"
    no_route = Client().get("/api/nothing-here")
    assert (no_route.status_code, no_route.json()["error"]) == (404, "no such endpoint: /api/nothing-here")
    wrong_method = Client().delete("/api/cities/")
    assert wrong_method.status_code == 405
    assert "GET" in wrong_method["Allow"]
    assert "not allowed" in wrong_method.json()["error"]


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


def test_health_and_readiness(live, settings):
    assert Client().get("/healthz").json() == {"status": "ok"}
    ready = Client().get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "broker": "ok"}
    settings.CELERY_BROKER_URL = "amqp://guest:guest@127.0.0.1:1//"
    started = time.monotonic()
    down = Client().get("/readyz")
    assert time.monotonic() - started < 10
    assert down.status_code == 503
    assert down.json()["checks"]["database"] == "ok"
    assert down.json()["checks"]["broker"].startswith("error")


@pytest.mark.django_db
def test_dashboard_searches_and_enforces_csrf():
    make_city("Paris", 48.85, 2.35)
    make_city("Lyon", 45.75, 4.85)
    page = Client().get("/?q=par")
    assert page.status_code == 200
    assert b"Paris" in page.content
    assert b"Lyon" not in page.content
    city_id = page.context["rows"][0]["city"].pk
    refused = Client(enforce_csrf_checks=True).post(f"/cities/{city_id}/refresh")
    assert refused.status_code == 403


@pytest.mark.django_db
def test_city_pages_show_each_latest_reading_in_a_fixed_number_of_queries(django_assert_max_num_queries):
    cities = make_cities(120)
    now = timezone.now()
    WeatherData.objects.bulk_create(
        WeatherData(city=city, temperature=hours, humidity=50, pressure=1000, observed_at=now - timedelta(hours=hours))
        for city in cities for hours in (1, 2, 3))
    newest = (now - timedelta(hours=1)).isoformat()
    # However deep the page: count, the page of cities, their latest readings (+ history, session).
    with django_assert_max_num_queries(4):
        dashboard = Client().get("/?page=5")
    assert len(dashboard.context["rows"]) == 20  # 120 cities, 25 a page
    with django_assert_max_num_queries(3):
        listing = Client().get("/api/cities/?page=3&page_size=50").json()
    assert (listing["count"], listing["pages"], len(listing["results"])) == (120, 3, 20)
    # Each city's own newest reading, not the newest of all or an older one.
    assert {(row["latest"]["temperature"], row["latest"]["observed_at"]) for row in listing["results"]} == {
        (1, newest)}
    assert {row["city"].temperature for row in dashboard.context["rows"]} == {1}


def test_sparkline_scales_history_into_the_box():
    from datetime import UTC, datetime, timedelta

    start = datetime(2026, 11, 24, tzinfo=UTC)
    points = sparkline_points([(start, 0.0), (start + timedelta(hours=1), 10.0), (start + timedelta(hours=2), 5.0)])
    assert points == "2.0,28.0 60.0,2.0 118.0,15.0"
    assert sparkline_points([(start, 1.0)]) == ""


def test_the_refresh_endpoint_cannot_flood_the_provider(live, sim, settings):
    settings.REFRESH_RATE_LIMIT_PER_MINUTE = 30
    cities = [make_city() for _ in range(5)]
    client = Client()
    live.stop("interactive")  # every request arrives while the first fetches are still queued
    try:
        statuses = [client.post(f"/api/cities/{cities[i % 5].pk}/refresh").status_code for i in range(60)]
        assert queue_depth("interactive") == 5, "one message per city, however often it was asked for"
    finally:
        live.start("interactive")
    assert (statuses.count(202), statuses.count(429)) == (30, 30)
    wait_for(lambda: not PendingFetch.objects.exists(), what="the five fetches")
    assert sim.stats()["requests"] == 5


@pytest.mark.django_db(transaction=True)
def test_a_city_deleted_while_claimed_is_a_404_not_a_500(monkeypatch):
    from weather import views

    city = make_city()
    real = views.enqueue_city_fetch

    def delete_first(city_id, priority):
        city.delete()  # the city vanishes between the view's check and the claim
        return real(city_id, priority)

    monkeypatch.setattr(views, "enqueue_city_fetch", delete_first)
    response = Client().post(f"/api/cities/{city.pk}/refresh")
    assert response.status_code == 404
    assert "no city" in response.json()["error"]
    assert not PendingFetch.objects.exists()
