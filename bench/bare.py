"""The baseline of bench/task_cost.py: a bare Celery app doing a lane's smallest real work, nothing of ours around it.

Same models, provider client, upsert and retention service as the project's tasks, on
a queue of the lane's own type; none of the project's task machinery: no crash guard,
run or batch bookkeeping, quota reservation, result backend, retries, metrics or log
context. Started as `celery -A bench.bare worker -Q bench_bare_<lane>` with the lane's
pool settings, BARE_LANE naming the lane (bench/task_cost.py). Like the project's
workers it keeps its database connection between tasks (Celery's CELERY_DB_REUSE_MAX),
so the two differ by the machinery only.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import django
from celery import Celery, signals
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server_config.settings")
django.setup()

from django.conf import settings  # noqa: E402  (after django.setup)

from routing import topology  # noqa: E402
from workers.pools import load_pools  # noqa: E402

# The lane whose pool settings this worker takes (the publisher imports it for the queues only).
LANE = os.environ.get("BARE_LANE", "bulk")


def bare_queue(lane: str) -> str:
    """The queue the baseline of `lane` consumes."""
    return f"bench_bare_{lane}"


_pool = load_pools()[LANE]
# Not the current app: the benchmark process that imports this module for the queues keeps the project's.
app = Celery("bare", broker=settings.CELERY_BROKER_URL, set_as_current=False)
app.conf.update(
    # Each lane's baseline queue is declared like the lane's own (its type, its priorities).
    task_queues=[Queue(bare_queue(queue.name), queue_arguments=queue.queue_arguments)
                 for queue in topology(settings.RABBITMQ_GENERATION).lane_queues],
    task_default_queue=bare_queue(LANE),
    task_acks_late=_pool.acks_late,
    task_reject_on_worker_lost=_pool.reject_on_worker_lost,
    task_ignore_result=True,
    worker_prefetch_multiplier=_pool.prefetch_multiplier,
    broker_connection_retry_on_startup=True,
)
app.conf["CELERY_DB_REUSE_MAX"] = 2**62

# Importing the project's settings loaded its Celery app, whose signal handlers
# (metrics, log context) are global: the baseline runs without them.
for signal in (signals.before_task_publish, signals.after_task_publish, signals.task_prerun, signals.task_postrun,
               signals.task_success, signals.task_failure, signals.task_retry):
    signal.receivers = []


@functools.lru_cache(maxsize=1)
def _service() -> Any:
    """One provider client (one pooled HTTP session) a process, as the project keeps one."""
    from weather.services import WeatherService

    return WeatherService()


@app.task(name="bench.bare.refresh_city")
def refresh_city(city_id: int) -> None:
    """One city's current conditions, fetched and upserted: the work of a one-city batch or a click's fetch."""
    from weather.models import City
    from weather.services import Location
    from weather.storage import upsert_readings

    city = City.objects.only("latitude", "longitude").get(pk=city_id)
    reading = _service().get_current(Location(city.latitude, city.longitude))
    upsert_readings([(city.pk, reading)])


@app.task(name="bench.bare.cleanup")
def cleanup() -> None:
    """The retention service's pass over every table: the work of the maintenance lane's cleanup."""
    from weather.retention import cleanup as clean

    clean()
