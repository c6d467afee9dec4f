"""The provider client against the simulator: one and many cities, every fault typed, idempotent storage."""

import socket
from datetime import UTC, datetime

import pytest

from tests.factories import make_city
from weather.models import WeatherData
from weather.services import (
    InvalidReadingError,
    Location,
    PermanentProviderError,
    Reading,
    TransientProviderError,
    WeatherService,
    parse_location,
)
from weather.storage import upsert_readings

PARIS = Location(48.8566, 2.3522)
OSLO = Location(59.9139, 10.7522)
SYDNEY = Location(-33.8688, 151.2093)


@pytest.fixture
def client(sim):
    return WeatherService(sim.url, timeout=(1.0, 0.5), batch_size=100)


def test_one_location(client, sim):
    reading = client.get_current(PARIS)
    assert -95 < reading.temperature < 65
    assert 0 <= reading.humidity <= 100
    assert reading.observed_at.tzinfo is not None
    assert reading.observed_at.minute % 15 == 0
    assert sim.stats()["requests"] == 1


def test_many_locations_in_one_request(client, sim):
    readings = client.get_current_many([PARIS, OSLO, SYDNEY])
    assert len(readings) == 3
    assert all(isinstance(r, Reading) for r in readings)
    # Deterministic by place: the same location answers the same values.
    assert client.get_current(OSLO) == readings[1]
    stats = sim.stats()
    assert (stats["requests"], stats["locations"]) == (2, 4)


def test_batch_larger_than_batch_size_is_refused(client):
    with pytest.raises(ValueError, match="exceed the batch size"):
        client.get_current_many([PARIS] * 101)


@pytest.mark.parametrize(
    ("fault", "error_class"),
    [
        ("error", TransientProviderError),
        ("rate_limit", TransientProviderError),
        ("timeout", TransientProviderError),
        ("malformed", TransientProviderError),
        ("cut", TransientProviderError),
    ],
)
def test_each_fault_maps_to_its_error_class(client, sim, fault, error_class):
    sim.configure(timeout_sleep_s=1.0)
    sim.script(fault)
    with pytest.raises(error_class) as caught:
        client.get_current_many([PARIS, OSLO])
    if error_class is PermanentProviderError:
        assert not isinstance(caught.value, TransientProviderError)


def test_rate_limit_carries_the_retry_hint(client, sim):
    sim.configure(retry_after_s=7)
    sim.script("rate_limit")
    with pytest.raises(TransientProviderError) as caught:
        client.get_current(PARIS)
    assert caught.value.retry_after == 7


def test_one_bad_location_does_not_sink_the_batch(client, sim):
    sim.script("bad_value")
    results = client.get_current_many([PARIS, OSLO, SYDNEY])
    assert isinstance(results[0], InvalidReadingError)
    assert "relative_humidity_2m" in str(results[0])
    assert all(isinstance(r, Reading) for r in results[1:])


def test_provider_refusal_is_permanent_and_its_reason_stays_in_the_log(sim, caplog):
    client = WeatherService(sim.url, timeout=(1.0, 1.0))
    with caplog.at_level("WARNING", logger="weather.services"), pytest.raises(PermanentProviderError) as refused:
        client.get_current(Location(95.0, 0.0))
    assert str(refused.value) == "provider refused the request (400)"
    assert "Latitude must be in range" in caplog.text


def test_unreachable_provider_is_transient():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = WeatherService(f"http://127.0.0.1:{port}/v1/forecast", timeout=(0.5, 0.5))
    with pytest.raises(TransientProviderError, match="unreachable"):
        client.get_current(PARIS)


@pytest.mark.parametrize(
    "current",
    [
        {"time": "2026-11-24T12:00", "temperature_2m": 500, "relative_humidity_2m": 50, "surface_pressure": 1000},
        {"time": "2026-11-24T12:00", "temperature_2m": 5, "relative_humidity_2m": -1, "surface_pressure": 1000},
        {"time": "2026-11-24T12:00", "temperature_2m": 5, "relative_humidity_2m": 50, "surface_pressure": 5},
        {"time": "2026-11-24T12:00", "temperature_2m": "warm", "relative_humidity_2m": 50, "surface_pressure": 1000},
        {"time": "yesterday", "temperature_2m": 5, "relative_humidity_2m": 50, "surface_pressure": 1000},
        {"temperature_2m": 5, "relative_humidity_2m": 50, "surface_pressure": 1000},
        {"time": "2026-11-24T12:00", "relative_humidity_2m": 50, "surface_pressure": 1000},
    ],
)
def test_impossible_or_incomplete_values_are_rejected(current):
    with pytest.raises(InvalidReadingError):
        parse_location({"utc_offset_seconds": 0, "current": current})


def test_time_is_converted_to_utc():
    reading = parse_location({
        "utc_offset_seconds": 3600,
        "current": {"time": "2026-11-24T13:00", "temperature_2m": 5, "relative_humidity_2m": 50,
                    "surface_pressure": 1000},
    })
    assert reading.observed_at == datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.mark.django_db
def test_upsert_is_idempotent():
    city = make_city()
    observed = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    upsert_readings([(city.pk, Reading(3.0, 80.0, 1010.0, observed))])
    upsert_readings([(city.pk, Reading(3.5, 81.0, 1011.0, observed))])
    rows = list(WeatherData.objects.filter(city=city))
    assert len(rows) == 1
    assert (rows[0].temperature, rows[0].humidity) == (3.5, 81.0)


@pytest.mark.parametrize("current", [
    {"time": "2026-11-30T12:00", "temperature_2m": "UPSTREAM-TEXT", "relative_humidity_2m": 50,
     "surface_pressure": 1000},
    {"time": "2026-11-30T12:00", "temperature_2m": 5, "relative_humidity_2m": 50, "surface_pressure": 99999.5},
    {"time": "UPSTREAM-TEXT", "temperature_2m": 5, "relative_humidity_2m": 50, "surface_pressure": 1000},
])
def test_an_invalid_reading_is_said_in_our_words_and_the_value_is_only_logged(caplog, current):
    # The message reaches anyone holding the task id: the field and what is wrong, never the provider's value.
    with caplog.at_level("WARNING", logger="weather.services"), pytest.raises(InvalidReadingError) as caught:
        parse_location({"current": current})
    value = "UPSTREAM-TEXT" if "UPSTREAM-TEXT" in current.values() else "99999.5"
    assert value not in str(caught.value)
    assert value in caplog.text


@pytest.mark.parametrize(("fault", "upstream", "ours"), [
    ("error", "Internal server error (injected)", "provider error (500)"),
    ("rate_limit", "Minutely API request limit exceeded", "provider rate limit (429)"),
    ("malformed", '{"latitude": 52.5', "provider body is not JSON (200)"),
])
def test_the_error_says_our_words_and_the_log_keeps_what_the_provider_said(client, sim, caplog, fault, upstream,
                                                                           ours):
    # The message reaches anyone holding the task id; the provider's text stays in the worker's log.
    sim.script(fault)
    with caplog.at_level("WARNING", logger="weather.services"), pytest.raises(TransientProviderError) as caught:
        client.get_current_many([PARIS])
    assert str(caught.value) == ours
    assert upstream in caplog.text

