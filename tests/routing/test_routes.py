"""The lane of a delivered message: its task's route, else the end of its routing key (delayed delivery's too)."""

from __future__ import annotations

import pytest
from kombu import Queue

from routing.routes import UnroutedTaskError, lane_of_message, route_task


@pytest.mark.parametrize(
    ("task_name", "delivery_info", "lane"),
    [
        ("weather.tasks.fetch_weather_for_city", {"routing_key": "bulk"}, "interactive"),
        ("celery.chord_unlock", None, "bulk"),
        ("somewhere.else", {"routing_key": "0.0.1.1.0.1.maintenance"}, "maintenance"),
        ("somewhere.else", {"routing_key": "bulk"}, "bulk"),
        ("somewhere.else", {}, "unknown"),
        ("somewhere.else", None, "unknown"),
    ],
)
def test_the_route_decides_and_the_routing_key_s_last_word_stands_in(task_name, delivery_info, lane):
    assert lane_of_message(task_name, delivery_info) == lane


def test_a_task_the_table_does_not_list_goes_to_the_declared_lane_its_sender_names():
    # Django's Tasks API names each enqueue's lane (queue_name); kombu may hand the router a Queue or a name.
    assert route_task("weather.jobs.fetch_city", (), {}, {"queue": Queue("maintenance")})["queue"] == "maintenance"
    assert route_task("weather.jobs.fetch_city", (), {}, {"queue": "bulk"})["queue"] == "bulk"
    # The table wins for a task it lists; nothing named, or an undeclared queue, is refused as before.
    assert route_task("weather.tasks.fetch_weather_for_city", (), {}, {"queue": "bulk"})["queue"] == "interactive"
    for options in ({}, {"queue": "undeclared"}):
        with pytest.raises(UnroutedTaskError):
            route_task("weather.jobs.fetch_city", (), {}, options)
