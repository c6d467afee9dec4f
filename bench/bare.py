"""The baseline of bench/task_cost.py: a bare Celery app doing a lane's smallest real work, nothing of ours around it.

Same models, provider client and upsert as the project's tasks, on a queue of the same
type; none of the project's task machinery: no crash guard, run or batch bookkeeping,
quota reservation, result backend, retries, metrics or log context. Started as
`celery -A bench.bare worker` with the lane's pool settings (bench/task_cost.py).
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

from workers.pools import load_pools  # noqa: E402

# The queue the baseline consumes, declared like the lane it stands beside.
BARE_QUEUE = os.environ.get("BARE_QUEUE", "bench_bare")
LANE = os.environ.get("BARE_LANE", "bulk")
QUEUE_TYPE = os.environ.get("BARE_QUEUE_TYPE", "quorum")

_pool = load_pools()[LANE]
app = Celery("bare", broker=settings.CELERY_BROKER_URL)
app.conf.update(
    task_queues=[Queue(BARE_QUEUE, queue_arguments={"x-queue-type": QUEUE_TYPE})],
    task_default_queue=BARE_QUEUE,
    task_acks_late=_pool.acks_late,
    task_reject_on_worker_lost=_pool.reject_on_worker_lost,
    task_ignore_result=True,
    worker_prefetch_multiplier=_pool.prefetch_multiplier,
    broker_connection_retry_on_startup=True,
)

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
    """One city's current conditions, fetched and upserted: the work of a one-city bulk batch."""
    from weather.models import City
    from weather.services import Location
    from weather.storage import upsert_readings

    city = City.objects.only("latitude", "longitude").get(pk=city_id)
    reading = _service().get_current(Location(city.latitude, city.longitude))
    upsert_readings([(city.pk, reading)])
