"""Flower, as the compose monitoring profile runs it, follows a task through its life and shows the lanes' lengths."""

import base64
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from celery import current_app

from routing import Priority, deployed
from tests.conftest import require
from tests.factories import make_city
from tools.harness import ROOT, wait_for
from tools.web_tier import free_port
from weather.dispatch import enqueue_city_fetch

pytestmark = [pytest.mark.integration, pytest.mark.rabbitmq4]

LOGIN = "ops:flower-test-password"


def _api(base: str, path: str) -> object:
    request = urllib.request.Request(base + path, headers={
        "Authorization": "Basic " + base64.b64encode(LOGIN.encode()).decode()})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def _task(base: str, task_id: str) -> dict:
    try:
        return _api(base, f"/api/task/info/{task_id}")
    except urllib.error.HTTPError as error:
        if error.code == 404:  # Flower has not seen an event of it yet
            return {}
        raise


@pytest.fixture
def flower(live, tmp_path):
    """Flower on loopback with basic auth and the broker's management API, against pools sending task events."""
    broker_api = os.environ.get("TEST_BROKER_API")
    require(None if broker_api else "no management API of the test broker (TEST_BROKER_API)",
            "Flower against the broker's management API")
    events_on = {"TASK_EVENTS": "true"}
    live.start("interactive", extra_env=events_on)
    port = free_port()
    log = open(tmp_path / "flower.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "server_config", "flower", "--address=127.0.0.1", f"--port={port}",
         f"--basic-auth={LOGIN}"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        env={**live.env, **events_on, "FLOWER_BROKER_API": broker_api})
    base = f"http://127.0.0.1:{port}"
    try:
        def answers() -> bool:
            assert process.poll() is None, (tmp_path / "flower.log").read_text()[-3000:]
            try:
                return bool(_api(base, "/api/workers?refresh=1"))
            except OSError:
                return False

        wait_for(answers, timeout=60, interval=0.5, what="Flower to see the pools")
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
        live.start("interactive")


@pytest.fixture
def sent_events():
    """This process publishes as the web does with TASK_EVENTS on: a task-sent event too."""
    before = current_app.conf.task_send_sent_event
    current_app.conf.task_send_sent_event = True
    yield
    current_app.conf.task_send_sent_event = before


def test_flower_follows_a_click_from_sent_to_success_and_shows_queue_lengths(flower, sent_events):
    city = make_city()
    task_id = enqueue_city_fetch(city.pk, Priority.CLICK).task_id
    info = wait_for(lambda: (t := _task(flower, task_id)).get("state") == "SUCCESS" and t, timeout=60,
                    interval=0.3, what="Flower to see the fetch succeed")
    assert info["name"] == "weather.tasks.fetch_weather_for_city"
    assert info["worker"].startswith("interactive@"), info["worker"]
    # Its whole life, each step from an event: sent by the publisher, received, started, succeeded by the pool
    # (each stamped by the process that sent it: their clocks, not an order, so only their presence is checked).
    assert all(info[step] for step in ("sent", "received", "started", "succeeded")), info
    assert info["runtime"] > 0, info
    assert info["routing_key"] == "interactive"
    listed = _api(flower, "/api/tasks?limit=50")
    assert task_id in listed
    # Queue lengths come from the broker's management API, one row for each lane the pools consume.
    lengths = {queue["name"]: queue["messages"] for queue in _api(flower, "/api/queues/length")["active_queues"]}
    assert {queue.name for queue in deployed().lane_queues} <= set(lengths), lengths
    assert all(isinstance(count, int) for count in lengths.values()), lengths
