"""Values declared once and derived everywhere: a test fails when two places disagree."""

from __future__ import annotations

import ast
import itertools
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from envvars import parse_bool, parse_int
from routing import BULK, LANE_NAMES
from tools import simulator
from tools.harness import ROOT
from weather import provider, schedules
from weather.services import WeatherService


def test_the_refresh_runs_at_its_declared_interval_and_expires_within_it():
    entry = settings.CELERY_BEAT_SCHEDULE["update_weather_data"]
    hours = sorted(entry["schedule"].hour)
    # On the hour, every REFRESH_EVERY_HOURS hours around the clock (including across midnight).
    assert entry["schedule"].minute == {0}
    gaps = {later - earlier for earlier, later in itertools.pairwise([*hours, hours[0] + 24])}
    assert gaps == {schedules.REFRESH_INTERVAL.total_seconds() // 3600}
    assert entry["options"]["expire_seconds"] == schedules.REFRESH_EXPIRES.total_seconds()
    assert schedules.REFRESH_EXPIRES < schedules.REFRESH_INTERVAL
    # A batch waiting for quota gives up when the next run would start anyway.
    assert schedules.REFRESH_EXPIRES.total_seconds() == settings.WEATHER_REFRESH_DEADLINE_SECONDS


def test_the_cleanup_runs_daily_at_its_declared_hour():
    entry = settings.CELERY_BEAT_SCHEDULE["cleanup_old_data"]
    assert (entry["schedule"].hour, entry["schedule"].minute) == ({schedules.CLEANUP_AT_HOUR}, {0})
    assert timedelta(days=1) == schedules.CLEANUP_INTERVAL
    assert entry["options"]["expire_seconds"] < schedules.CLEANUP_INTERVAL.total_seconds()


def test_the_provider_location_cap_is_one_number():
    cap = provider.MAX_LOCATIONS_PER_REQUEST
    assert cap == simulator.MAX_LOCATIONS
    assert WeatherService("http://127.0.0.1:9/v1/forecast", batch_size=cap + 1).batch_size == cap
    assert cap >= settings.WEATHER_BATCH_SIZE


def test_quota_defaults_are_the_providers_free_tier():
    # scripts/test sets no WEATHER_QUOTA_*: these are the settings' defaults.
    assert (settings.WEATHER_QUOTA_PER_MINUTE, settings.WEATHER_QUOTA_PER_HOUR, settings.WEATHER_QUOTA_PER_DAY) == (
        provider.FREE_TIER_LOCATIONS_PER_MINUTE, provider.FREE_TIER_LOCATIONS_PER_HOUR,
        provider.FREE_TIER_LOCATIONS_PER_DAY)


def test_settings_name_lanes_through_routing():
    assert BULK.name == settings.CELERY_TASK_DEFAULT_QUEUE
    assert [queue.name for queue in settings.CELERY_TASK_QUEUES] == list(LANE_NAMES)
    # And never by a literal of their own: a renamed lane must not leave a stale name behind.
    modules = [*(ROOT / "server_config" / "settings").glob("*.py"), ROOT / "weather/quota.py",
               ROOT / "weather/schedules.py"]
    for module in modules:
        tree = ast.parse(module.read_text())
        literals = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)}
        assert not literals & set(LANE_NAMES), f"{module} spells a lane name: {literals & set(LANE_NAMES)}"


@pytest.mark.parametrize(("raw", "value"), [("true", True), ("Off", False), (" 1 ", True)])
def test_booleans_parse_one_way_for_settings_and_pools(raw, value):
    assert parse_bool("X", raw) is value


def test_bad_numbers_name_their_variable():
    with pytest.raises(ImproperlyConfigured, match="WORKER_BULK_CONCURRENCY='four'"):
        parse_int("WORKER_BULK_CONCURRENCY", "four")
