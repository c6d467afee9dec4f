"""The lane of a delivered message: its task's route, else the end of its routing key (delayed delivery's too)."""

from __future__ import annotations

import pytest

from routing.routes import lane_of_message


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
