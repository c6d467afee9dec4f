"""The topology, declared once: every task routed to a declared lane, settings derived from routing."""


import pytest
from celery import current_app as app
from django.conf import settings
from django.utils.module_loading import import_string

from routing import (
    DEAD_LETTER_EXCHANGE,
    INTERACTIVE,
    LANE_NAMES,
    QUORUM_NORMAL_MAX,
    TASK_LANES,
    BrokerGeneration,
    Priority,
    QueueType,
    UnroutedTaskError,
    deployed,
    lane_for,
    topology,
)
from weather.lanetasks.api import Task


def test_every_registered_task_resolves_to_a_declared_lane():
    app.loader.import_default_modules()
    names = set(app.tasks)
    assert "weather.tasks.fetch_weather_for_city" in names
    for name in names:
        if name in TASK_LANES or name.startswith("celery."):
            assert lane_for(name) in LANE_NAMES
        else:
            # A Django task (weather/lanetasks): it names its lane each time it is sent.
            django_task = import_string(name)
            assert isinstance(django_task, Task), name
            assert django_task.queue_name in LANE_NAMES, name



def test_route_table_lists_only_real_tasks():
    app.loader.import_default_modules()
    assert set(TASK_LANES) <= set(app.tasks), set(TASK_LANES) - set(app.tasks)



def test_unknown_task_fails_loudly():
    assert settings.CELERY_TASK_CREATE_MISSING_QUEUES is False
    with pytest.raises(UnroutedTaskError, match=r"weather\.tasks\.typo"):
        app.send_task("weather.tasks.typo")



def test_settings_queues_are_the_declared_lanes_of_the_stated_generation():
    assert deployed().generation is settings.RABBITMQ_GENERATION
    assert list(app.conf.task_queues) == list(deployed().lane_queues)
    assert [q.name for q in app.conf.task_queues] == list(LANE_NAMES)
    assert app.conf.task_default_queue in LANE_NAMES


@pytest.mark.parametrize("generation", list(BrokerGeneration))
def test_every_lane_dead_letters_and_priorities_fit_the_generation(generation):
    lanes = topology(generation)
    for queue in lanes.lane_queues:
        assert queue.queue_arguments["x-dead-letter-exchange"] == DEAD_LETTER_EXCHANGE.name
        assert queue.durable
    interactive = lanes.lane_queue(INTERACTIVE.name)
    if lanes.queue_type(INTERACTIVE) is QueueType.CLASSIC:
        assert interactive.queue_arguments["x-max-priority"] >= max(Priority)
    else:
        # A quorum queue refuses x-max-priority (406): its priorities need no argument.
        assert "x-max-priority" not in interactive.queue_arguments


def test_only_a_click_is_high_on_quorum_queues_with_two_levels():
    assert Priority.CLICK > Priority.API > Priority.WARMUP
    assert [p for p in Priority if p > QUORUM_NORMAL_MAX] == [Priority.CLICK]
    # RabbitMQ 4.3's strict levels (up to 32) keep the classic queue's order: the same numbers serve.
    assert max(Priority) < 32
