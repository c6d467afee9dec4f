"""The topology, declared once: every task routed to a declared lane, settings derived from routing."""


import pytest
from celery import current_app as app
from django.conf import settings

from routing import DEAD_LETTER_EXCHANGE, LANE_NAMES, LANE_QUEUES, TASK_LANES, Priority, UnroutedTaskError, lane_for


def test_every_registered_task_resolves_to_a_declared_lane():
    app.loader.import_default_modules()
    names = set(app.tasks)
    assert "weather.tasks.fetch_weather_for_city" in names
    for name in names:
        assert lane_for(name) in LANE_NAMES



def test_route_table_lists_only_real_tasks():
    app.loader.import_default_modules()
    assert set(TASK_LANES) <= set(app.tasks), set(TASK_LANES) - set(app.tasks)



def test_unknown_task_fails_loudly():
    assert settings.CELERY_TASK_CREATE_MISSING_QUEUES is False
    with pytest.raises(UnroutedTaskError, match=r"weather\.tasks\.typo"):
        app.send_task("weather.tasks.typo")



def test_settings_queues_are_the_declared_lanes():
    assert [q.name for q in app.conf.task_queues] == list(LANE_NAMES)
    assert app.conf.task_default_queue in LANE_NAMES
    for queue in LANE_QUEUES:
        assert queue.queue_arguments["x-dead-letter-exchange"] == DEAD_LETTER_EXCHANGE.name
        assert queue.durable
    interactive = next(q for q in LANE_QUEUES if q.name == "interactive")
    assert interactive.queue_arguments["x-max-priority"] >= max(Priority)
    assert Priority.CLICK > Priority.API > Priority.WARMUP
