"""Bad provider answers: every one is a typed provider error or a valid reading, never a stray exception."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from datetime import timezone as dt_timezone
from functools import partial
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.utils import timezone
from django_celery_results.models import TaskResult
from hypothesis import given, settings
from hypothesis import strategies as st
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers

from tests.fuzzing import (
    BASE,
    JSON_VALUES,
    NO_SHRINK,
    _json_bytes,
    outcome_of,
)
from weather.models import City, DailySummary, PendingFetch, RateWindow, RefreshRun, WeatherData
from weather.services import (
    CURRENT_FIELDS,
    HUMIDITY_RANGE_PCT,
    PRESSURE_RANGE_HPA,
    TEMPERATURE_RANGE_C,
    InvalidReadingError,
    Location,
    PermanentProviderError,
    ProviderError,
    Reading,
    TransientProviderError,
    WeatherService,
    parse_location,
)

PROVIDER_URL = "http://provider.invalid/v1/forecast"
RANGES = {
    "temperature": TEMPERATURE_RANGE_C,
    "humidity": HUMIDITY_RANGE_PCT,
    "pressure": PRESSURE_RANGE_HPA,
}
# Every table a request could write to, directly or through a task it enqueues.
WATCHED_MODELS = (City, WeatherData, DailySummary, PendingFetch, RateWindow, RefreshRun, TaskResult)



# --- strategies: provider answers -------------------------------------------------------------------------

# One day away from datetime.min/max; the edges themselves have a test of their own below.
_NAIVE_TIMES = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30))
_FIXED_ZONES = st.integers(min_value=-86_399, max_value=86_399).map(lambda s: dt_timezone(timedelta(seconds=s)))
TIMES = st.one_of(
    _NAIVE_TIMES.map(lambda moment: moment.strftime("%Y-%m-%dT%H:%M")),  # what Open-Meteo sends: local time
    _NAIVE_TIMES.map(datetime.isoformat),
    st.builds(datetime.isoformat, st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                                                timezones=_FIXED_ZONES)),
    st.dates(min_value=date(1, 1, 2), max_value=date(9999, 12, 30)).map(date.isoformat),
    st.text(alphabet="0123456789-T:+Z. ", max_size=25),
    st.text(max_size=25),
    JSON_VALUES,
)
OFFSETS = st.one_of(
    st.integers(min_value=-18 * 3600, max_value=18 * 3600),
    st.integers(min_value=-(2**70), max_value=2**70),
    JSON_VALUES,
)


def numbers(bounds: tuple[float, float]) -> st.SearchStrategy[Any]:
    """Mostly plausible values for one field, with the edges, the impossible and the wrong types."""
    low, high = bounds
    return st.one_of(
        st.floats(min_value=low, max_value=high),
        st.integers(min_value=math.ceil(low), max_value=math.floor(high)),
        st.sampled_from([low, high, math.nextafter(low, -math.inf), math.nextafter(high, math.inf)]),
        st.floats(),
        st.integers(min_value=-(2**64), max_value=2**64),
        JSON_VALUES,
    )


def _current(required: bool) -> st.SearchStrategy[dict[str, Any]]:
    fields = {
        "time": TIMES,
        "temperature_2m": numbers(TEMPERATURE_RANGE_C),
        "relative_humidity_2m": numbers(HUMIDITY_RANGE_PCT),
        "surface_pressure": numbers(PRESSURE_RANGE_HPA),
    }
    extra = {"interval": JSON_VALUES, "weather_code": JSON_VALUES}
    if required:
        return st.fixed_dictionaries(fields, optional=extra)
    return st.fixed_dictionaries({}, optional={**fields, **extra})


# Shaped like one location of an Open-Meteo answer, with arbitrary values in every field.
OPEN_METEO_ITEMS = st.fixed_dictionaries(
    {"current": st.one_of(_current(required=True), _current(required=False), JSON_VALUES)},
    optional={
        "utc_offset_seconds": OFFSETS,
        "latitude": JSON_VALUES,
        "timezone": JSON_VALUES,
        "current_units": JSON_VALUES,
    },
)


def _answer(when: object = "2024-05-01T12:15", offset: object = 0, temperature: object = 12.5,
            humidity: object = 60, pressure: object = 1013.2) -> dict[str, Any]:
    """A well-formed Open-Meteo location, with any field replaceable."""
    return {
        "latitude": 48.86,
        "longitude": 2.35,
        "utc_offset_seconds": offset,
        "current": {"time": when, "interval": 900, "temperature_2m": temperature,
                    "relative_humidity_2m": humidity, "surface_pressure": pressure},
    }


OPEN_METEO_TIMES = _NAIVE_TIMES.map(lambda moment: moment.strftime("%Y-%m-%dT%H:%M"))
WELL_FORMED_ITEMS = st.builds(
    _answer,
    when=st.one_of(OPEN_METEO_TIMES, _NAIVE_TIMES.map(datetime.isoformat)),
    offset=st.integers(min_value=-18 * 3600, max_value=18 * 3600),
    temperature=st.floats(*TEMPERATURE_RANGE_C),
    humidity=st.floats(*HUMIDITY_RANGE_PCT),
    pressure=st.floats(*PRESSURE_RANGE_HPA),
)
FIELD_VALUES = {
    "time": TIMES,
    "temperature_2m": numbers(TEMPERATURE_RANGE_C),
    "relative_humidity_2m": numbers(HUMIDITY_RANGE_PCT),
    "surface_pressure": numbers(PRESSURE_RANGE_HPA),
    "utc_offset_seconds": OFFSETS,
    "current": JSON_VALUES,
}


@st.composite
def one_field_off(draw: st.DrawFn) -> dict[str, Any]:
    """A well-formed answer with exactly one field replaced or removed: each check must hold on its own."""
    item = draw(WELL_FORMED_ITEMS)
    field = draw(st.sampled_from(sorted(FIELD_VALUES)))
    holder = item if field in ("utc_offset_seconds", "current") else item["current"]
    if draw(st.integers(min_value=0, max_value=5)) == 0:
        del holder[field]
    else:
        holder[field] = draw(FIELD_VALUES[field])
    return item


# Mostly near-valid locations (where validation bugs hide), and arbitrary shapes.
ITEMS = st.one_of(WELL_FORMED_ITEMS, one_field_off(), OPEN_METEO_ITEMS)


def assert_valid_reading(reading: Reading) -> None:
    """A reading is physically plausible and observed at an aware UTC instant."""
    assert isinstance(reading, Reading)
    for name, (low, high) in RANGES.items():
        value = getattr(reading, name)
        assert type(value) is float, (name, value)
        assert math.isfinite(value), (name, value)
        assert low <= value <= high, (name, value)
    assert reading.observed_at.tzinfo is not None
    assert reading.observed_at.utcoffset() == timedelta(0)


# --- 1. parse_location ---------------------------------------------------------------------------------------


@settings(BASE, max_examples=80)
@given(item=st.one_of(ITEMS, JSON_VALUES, st.lists(ITEMS, max_size=2)))
def test_parse_location_returns_a_valid_reading_or_raises_invalid_reading_error(item: Any) -> None:
    try:
        reading = parse_location(item)
    except InvalidReadingError:
        return
    assert_valid_reading(reading)


@settings(BASE, max_examples=50)
@given(
    when=_NAIVE_TIMES,
    offset=st.integers(min_value=-18 * 3600, max_value=18 * 3600),
    temperature=st.floats(*TEMPERATURE_RANGE_C),
    humidity=st.floats(*HUMIDITY_RANGE_PCT),
    pressure=st.floats(*PRESSURE_RANGE_HPA),
)
def test_parse_location_accepts_every_well_formed_answer(when: datetime, offset: int, temperature: float,
                                                        humidity: float, pressure: float) -> None:
    # The other side of the property: validation must not refuse what is plausible.
    item = _answer(when.isoformat(), offset, temperature, humidity, pressure)
    reading = parse_location(item)
    assert_valid_reading(reading)
    assert (reading.temperature, reading.humidity, reading.pressure) == (temperature, humidity, pressure)
    assert reading.observed_at == when.replace(tzinfo=UTC) - timedelta(seconds=offset)


@settings(BASE, max_examples=20, phases=NO_SHRINK)
@given(
    value=st.integers(min_value=2**1024, max_value=2**1100) | st.integers(min_value=-(2**1100), max_value=-(2**1024)),
    field=st.sampled_from(CURRENT_FIELDS),
)
def test_parse_location_refuses_integers_beyond_float_range(value: int, field: str) -> None:
    # json.loads turns a 400-digit number into an int, so any provider body can carry one.
    item = _answer()
    item["current"][field] = value
    with pytest.raises(InvalidReadingError):
        parse_location(item)


@settings(BASE, max_examples=20, phases=NO_SHRINK)
@given(edge=st.sampled_from(["low", "high"]), hours=st.integers(min_value=1, max_value=18),
       minute=st.integers(min_value=0, max_value=59), aware=st.booleans())
def test_parse_location_refuses_times_that_leave_the_calendar_in_utc(edge: str, hours: int, minute: int,
                                                                    aware: bool) -> None:
    # 0001-01-01 00:xx at UTC+h, or 9999-12-31 23:xx at UTC-h, is before datetime.min / after datetime.max in UTC.
    sign, stamp = (1, f"0001-01-01T00:{minute:02d}") if edge == "low" else (-1, f"9999-12-31T23:{minute:02d}")
    offset = sign * hours * 3600
    when = f"{stamp}{'+' if sign > 0 else '-'}{hours:02d}:00" if aware else stamp
    with pytest.raises(InvalidReadingError):
        parse_location(_answer(when, offset=offset))


# --- 2. WeatherService over a fake transport ------------------------------------------------------------------


def canned_response(status: int, body: bytes, headers: dict[str, str]) -> requests.Response:
    """A requests Response as HTTPAdapter.build_response makes it: the charset comes from Content-Type."""
    response = requests.Response()
    response.status_code = status
    response._content = body
    response.headers = CaseInsensitiveDict(headers)
    response.encoding = get_encoding_from_headers(response.headers)
    response.reason = "canned"
    return response


class CannedTransport(BaseAdapter):
    """Answers every request with one canned status, body and headers, without touching the network."""

    def __init__(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        super().__init__()
        self.status = status
        self.body = body
        self.headers = headers
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: object = None,
             verify: object = True, cert: object = None, proxies: object = None) -> requests.Response:
        self.sent.append(request)
        response = canned_response(self.status, self.body, self.headers)
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        pass


def provider_answering(status: int, body: bytes, headers: dict[str, str] | None = None
                       ) -> tuple[WeatherService, CannedTransport]:
    """The provider client on a session whose only transport is the canned answer."""
    transport = CannedTransport(status, body, headers or {})
    session = requests.Session()
    session.trust_env = False  # no proxies or netrc from the environment
    session.mount("http://provider.invalid/", transport)
    return WeatherService(PROVIDER_URL, session=session, timeout=(1, 1), batch_size=10), transport


LOCATIONS = st.lists(
    st.builds(Location, st.floats(min_value=-90, max_value=90), st.floats(min_value=-180, max_value=180)),
    min_size=1,
    max_size=10,
)
# 200 is the interesting status (the body is parsed); the others only have to be typed right.
STATUSES = st.one_of(st.sampled_from([200, 200, 200, 204, 301, 400, 404, 429, 500, 502, 503]),
                     st.integers(min_value=100, max_value=599))
BODIES = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(str.encode),
    JSON_VALUES.map(_json_bytes),
    OPEN_METEO_ITEMS.map(_json_bytes),
    st.lists(ITEMS, max_size=12).map(_json_bytes),  # mostly the wrong length for the locations asked
    st.fixed_dictionaries({"error": JSON_VALUES}, optional={"reason": JSON_VALUES}).map(_json_bytes),
    st.sampled_from([b"", b"null", b"[]", b"{}", b"NaN", b"1" * 5000, b'{"current": {}}', b"\xff\xfe\x00"]),
)
# Not "idna": requests' Response.text raises for it; a test of its own below covers it.
CHARSETS = st.sampled_from([None, "utf-8", "UTF-8", "latin-1", "utf-16", "utf-32", "ascii", "cp1252",
                            "base64", "no-such-charset", "utf-7"])
RETRY_AFTERS = st.one_of(st.none(), st.text(max_size=12), st.floats(allow_nan=True).map(str),
                         st.integers(min_value=-(10**6), max_value=10**6).map(str),
                         st.just("Wed, 21 Oct 2015 07:28:00 GMT"))


@st.composite
def provider_headers(draw: st.DrawFn, charsets: st.SearchStrategy[str | None] = CHARSETS) -> dict[str, str]:
    """Content-Type (media type and charset) and Retry-After, each present or not."""
    headers: dict[str, str] = {}
    media = draw(st.sampled_from([None, "application/json", "text/plain", "text/html", "application/octet-stream"]))
    charset = draw(charsets)
    if media is not None:
        headers["Content-Type"] = media if charset is None else f"{media}; charset={charset}"
    retry_after = draw(RETRY_AFTERS)
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return headers


@st.composite
def provider_cases(draw: st.DrawFn) -> tuple[list[Location], int, bytes, dict[str, str]]:
    """Locations asked, and the status, body and headers of the answer."""
    locations = draw(LOCATIONS)
    # Half the time an answer of the right length, so the slot-by-slot path is reached.
    slots = st.lists(ITEMS, min_size=len(locations), max_size=len(locations))
    if len(locations) == 1:
        slots = slots | ITEMS  # Open-Meteo answers one location with an object, not a list
    body = draw(st.one_of(slots.map(_json_bytes), BODIES))
    return locations, draw(STATUSES), body, draw(provider_headers())


@settings(BASE, max_examples=80)
@given(case=provider_cases())
def test_get_current_many_answers_one_slot_per_location_or_raises_a_provider_error(
    case: tuple[list[Location], int, bytes, dict[str, str]],
) -> None:
    locations, status, body, headers = case
    service, transport = provider_answering(status, body, headers)
    # Anything but a ProviderError propagates and fails the test.
    outcome = outcome_of(lambda: service.get_current_many(locations), ProviderError)
    if isinstance(outcome, TransientProviderError):
        # A 429, a 5xx, or a 200 whose body is cut short or garbled (not JSON).
        assert status == 429 or status >= 500 or (status == 200 and "not JSON" in str(outcome)), status
        assert outcome.status == status
        assert outcome.retry_after is None or outcome.retry_after >= 0
    elif isinstance(outcome, PermanentProviderError):
        assert status != 429, status
        assert status < 500, status
    else:
        assert status == 200
        assert isinstance(outcome, list)
        assert len(outcome) == len(locations)
        # Each slot is its own location's verdict, in order: one bad location does not sink the others.
        parsed = canned_response(status, body, headers).json()
        for item, result in zip(parsed if isinstance(parsed, list) else [parsed], outcome, strict=True):
            expected = outcome_of(partial(parse_location, item), InvalidReadingError)
            if isinstance(result, InvalidReadingError):
                assert isinstance(expected, InvalidReadingError)
                assert str(result) == str(expected)
            else:
                assert_valid_reading(result)
                assert result == expected
    # One request a batch, to the configured endpoint, with one coordinate pair a location.
    (request,) = transport.sent
    assert (request.url or "").startswith(PROVIDER_URL)
    latitudes = parse_qs(urlsplit(request.url or "").query)["latitude"][0]
    assert latitudes.count(",") == len(locations) - 1


@settings(BASE, max_examples=10, phases=NO_SHRINK)
@given(depth=st.integers(min_value=5_000, max_value=50_000), shape=st.sampled_from(["list", "dict"]),
       status=st.sampled_from([200, 404, 429, 500]))
def test_deeply_nested_json_is_a_provider_error(depth: int, shape: str, status: int) -> None:
    # A few hundred kilobytes of brackets is a body any broken proxy or hostile endpoint can send.
    opener, closer = ("[", "]") if shape == "list" else ('{"a":', "}")
    service, _ = provider_answering(status, (opener * depth + "1" + closer * depth).encode(),
                                    {"Content-Type": "application/json"})
    with pytest.raises(ProviderError):
        service.get_current_many([Location(48.86, 2.35)])


@settings(BASE, max_examples=10, phases=NO_SHRINK)
@given(status=STATUSES, body=BODIES, media=st.sampled_from(["text/plain", "application/json", "text/html"]))
def test_a_charset_requests_cannot_decode_is_a_provider_error(status: int, body: bytes, media: str) -> None:
    service, _ = provider_answering(status, body, {"Content-Type": f"{media}; charset=idna"})
    with pytest.raises(ProviderError):
        service.get_current_many([Location(48.86, 2.35)])


def _usable_delay(seconds: float) -> bool:
    """What quota.pause_provider() does with a 429's retry_after: now + timedelta(seconds)."""
    try:
        timezone.now() + timedelta(seconds=seconds)
    except (OverflowError, ValueError):
        return False
    return math.isfinite(seconds)


@settings(BASE, max_examples=20, phases=NO_SHRINK)
@given(value=st.one_of(st.sampled_from(["inf", "Infinity", "1e309"]),
                       st.floats(min_value=1e12, allow_infinity=True).map(repr)),
       status=st.sampled_from([429, 503]))
def test_retry_after_is_a_delay_the_quota_can_honour(value: str, status: int) -> None:
    service, _ = provider_answering(status, b"{}", {"Retry-After": value})
    with pytest.raises(TransientProviderError) as raised:
        service.get_current_many([Location(48.86, 2.35)])
    retry_after = raised.value.retry_after
    assert retry_after is None or _usable_delay(retry_after), retry_after


