"""Bad input everywhere gets a 4xx with a clear JSON error: never a 500, never a stray exception, never a write."""

from __future__ import annotations

import codecs
import io
import json
import math
import string
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from datetime import timezone as dt_timezone
from functools import partial
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit
from wsgiref.util import setup_testing_defaults

import pytest
import requests
from celery import Celery
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.test import Client, RequestFactory, override_settings
from django.utils import timezone
from django.utils.http import parse_header_parameters
from django_celery_results.models import TaskResult
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from kombu import Producer
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers

from weather import dispatch
from weather.models import City, DailySummary, PendingFetch, RateCounter, RefreshRun, WeatherData
from weather.ratelimit import client_key
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

# Derandomized, so every run (and CI) tries the same examples; no example database on disk, so a
# failure prints a @reproduce_failure blob instead.
BASE = settings(database=None, deadline=None, print_blob=True, derandomize=True)
# The Django tests share pytest-django's db fixture (and monkeypatch) across examples on purpose:
# every example compares row counts before and after itself, so a shared transaction is fine.
DB = settings(BASE, suppress_health_check=[HealthCheck.function_scoped_fixture])
# For the edge-case tests the first failing example says it all; shrinking would only spend time.
NO_SHRINK = (Phase.explicit, Phase.generate)

PROVIDER_URL = "http://provider.invalid/v1/forecast"
RANGES = {
    "temperature": TEMPERATURE_RANGE_C,
    "humidity": HUMIDITY_RANGE_PCT,
    "pressure": PRESSURE_RANGE_HPA,
}
# Every table a request could write to, directly or through a task it enqueues.
WATCHED_MODELS = (City, WeatherData, DailySummary, PendingFetch, RateCounter, RefreshRun, TaskResult)


# --- strategies: provider answers -------------------------------------------------------------------------

# Integers stay well inside float range here; larger ones have a test of their own below.
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats()  # nan and +-inf included
    | st.text(max_size=20)
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)

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


def outcome_of(call: Callable[[], object], expected: type[Exception]) -> object:
    """What the call returned, or the expected exception it raised (any other exception propagates)."""
    try:
        return call()
    except expected as error:
        return error


def _json_bytes(value: Any) -> bytes:
    # allow_nan (the default) writes NaN/Infinity, which Python's json (and so requests) reads back.
    return json.dumps(value).encode()


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
        assert status == 429 or status >= 500, status
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


# --- 3. HTTP endpoints ----------------------------------------------------------------------------------------


def row_counts() -> dict[str, int]:
    """Rows in every table a request could write to."""
    return {model.__name__: model.objects.count() for model in WATCHED_MODELS}


@pytest.fixture
def no_publish(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails any request that tries to send a task: bad input must never reach the broker.

    The AssertionError is raised inside the view; dispatch.publishing() only turns broker errors
    into 503s, and the test client re-raises whatever a view raises, so the test fails with it.
    """

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"bad input tried to publish: {args!r:.200}")

    monkeypatch.setattr(Celery, "send_task", refuse)
    monkeypatch.setattr(Producer, "publish", refuse)


def assert_refused_cleanly(response: HttpResponse, url: str) -> dict[str, Any] | None:
    """Never a 5xx; a 4xx under /api/ is JSON with an "error" string. Returns the JSON body, if any."""
    assert response.status_code < 500, (url, response.status_code, response.content[:300])
    is_json = response.get("Content-Type", "").startswith("application/json")
    if response.wsgi_request.method == "HEAD":
        # A HEAD answer has headers only (Django strips the body): its Content-Type is all there is to check.
        assert is_json or not (url.startswith("/api/") and 400 <= response.status_code < 500), response
        return None
    body = json.loads(response.content) if is_json else None
    if url.startswith("/api/") and 400 <= response.status_code < 500:
        assert body is not None, (url, response.status_code, response.get("Content-Type"), response.content[:200])
        assert isinstance(body, dict), body
        assert isinstance(body.get("error"), str), body
        assert body["error"].strip(), body
    return body


def request_writes_nothing(send: Callable[[], HttpResponse]) -> HttpResponse:
    """Sends the request and checks that no watched table changed."""
    before = row_counts()
    response = send()
    assert row_counts() == before
    return response


def routable(segment: str) -> bool:
    """A segment Django's <str:...> converter matches once the client has percent-decoded the path."""
    return segment != "" and "/" not in segment


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _is_iso_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


TEXT = st.characters(exclude_categories=("Cs",))  # surrogates cannot be percent-encoded
SEGMENTS = st.one_of(
    st.text(TEXT, min_size=1, max_size=40),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.uuids().map(str),
    st.sampled_from([
        "0", "-1", "+1", "1.0", "1e3", "0x1f", " 1", "1 ", "1_0", "\u0663", "\uff11", "9" * 18, "9" * 19,
        "9" * 5000, "%", "%2F", "..", ".", "null", "\x00", "\n", "\ufb00", "<script>", "' OR 1=1 --",
    ]),
).filter(routable)

# Content types whose charset Django can read. Bytes-to-bytes codecs ("base64", ...) or a NUL in the
# charset make WSGIRequest() itself raise, before any middleware; and Django decodes the query string
# with this charset too, so a non-ASCII-compatible one (utf-16) garbles ?day= away. Both are refused
# (415) and tested below; here only ASCII-compatible charsets (and unknown names, which Django ignores).
READABLE_CHARSETS = {codecs.lookup(name).name for name in ("utf-8", "latin-1", "ascii", "cp1252", "koi8-r")}


def django_reads(content_type: str) -> bool:
    """Whether Django can build a request with this Content-Type (see READABLE_CHARSETS)."""
    charset = parse_header_parameters(content_type)[1].get("charset")
    if charset is None:
        return True
    try:
        return codecs.lookup(charset).name in READABLE_CHARSETS
    except LookupError:
        return True  # Django ignores a charset it does not know
    except ValueError:
        return False


CONTENT_TYPES = st.one_of(
    st.sampled_from([
        "application/json", "application/json; charset=utf-8", "application/x-www-form-urlencoded",
        "multipart/form-data", "multipart/form-data; boundary=", "multipart/form-data; boundary=BoUnDaRy",
        "text/plain; charset=latin-1", "text/plain; charset=no-such-charset", "application/xml", "", ";;;",
        "text/plain; charset=" + "x" * 5000,
    ]),
    st.text(TEXT, max_size=60),
    st.integers(min_value=1_000, max_value=100_000).map(lambda n: "application/json; x=" + "y" * n),
).filter(django_reads)
HEADER_VALUES = st.one_of(
    st.text(st.characters(min_codepoint=0, max_codepoint=255), max_size=60),  # WSGI carries latin-1
    st.sampled_from(["", "1.2.3.4", "::1, 10.0.0.1", "unknown", ", , ,", "999.999.999.999", "\x00"]),
    st.integers(min_value=1_000, max_value=200_000).map(lambda n: "1.2.3.4, " * (n // 9)),
)
HEADERS = st.fixed_dictionaries({}, optional={
    "X-Forwarded-For": HEADER_VALUES,
    "X-Real-IP": HEADER_VALUES,
    "X-Forwarded-Proto": HEADER_VALUES,
    "Authorization": HEADER_VALUES,
    "Accept": HEADER_VALUES,
    "Origin": HEADER_VALUES,
    "Referer": HEADER_VALUES,
    "Cookie": HEADER_VALUES,
})  # Not Content-Length: gunicorn refuses a malformed one itself, and the test client would hand it to Django raw.
REQUEST_BODIES = st.one_of(
    st.binary(max_size=300),
    st.text(TEXT, max_size=200).map(str.encode),
    JSON_VALUES.map(_json_bytes),
    st.sampled_from([b"", b"{", b"--BoUnDaRy\r\n", b"csrfmiddlewaretoken=x&city_id=1", b"a=" + b"b" * 3_000_000]),
)


def post(client: Client, url: str, body: bytes, content_type: str, headers: dict[str, str]) -> HttpResponse:
    # generic(), not post(): post() re-encodes the body with the charset from content_type.
    return client.generic("POST", url, body, content_type=content_type, headers=headers)


@pytest.mark.django_db
@settings(DB, max_examples=60)
@given(segment=SEGMENTS, body=REQUEST_BODIES, content_type=CONTENT_TYPES, headers=HEADERS)
def test_api_refresh_of_anything_but_a_city_is_a_json_404(no_publish: None, segment: str, body: bytes,
                                                          content_type: str, headers: dict[str, str]) -> None:
    # No city exists, so no request gets as far as the rate limit or the broker.
    url = f"/api/cities/{quote(segment, safe='')}/refresh"
    response = request_writes_nothing(lambda: post(Client(), url, body, content_type, headers))
    assert_refused_cleanly(response, url)
    assert response.status_code == 404


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Task ids of the fetches the refresh endpoint publishes, recorded instead of sent."""
    sent: list[str] = []

    def record(*args: object, task_id: str, **kwargs: object) -> None:
        sent.append(task_id)

    monkeypatch.setattr(dispatch.fetch_weather_for_city, "apply_async", record)
    return sent


@pytest.mark.django_db
@settings(DB, max_examples=60)
@given(body=REQUEST_BODIES, content_type=CONTENT_TYPES, headers=HEADERS, proxies=st.integers(0, 2))
def test_refreshing_a_real_city_with_any_headers_or_body_queues_at_most_one_fetch(
    published: list[str], django_capture_on_commit_callbacks: Callable, body: bytes, content_type: str,
    headers: dict[str, str], proxies: int,
) -> None:
    # Whatever a client sends around a valid request, behind any number of trusted
    # proxies: 202 with the city's one pending fetch, or 429; never a 5xx, never a second message.
    city, _ = City.objects.get_or_create(name="Fuzzton", country_code="FR", latitude=45.0, longitude=5.0)
    url = f"/api/cities/{city.pk}/refresh"
    with override_settings(NUM_TRUSTED_PROXIES=proxies), django_capture_on_commit_callbacks(execute=True):
        response = post(Client(), url, body, content_type, headers)
    answer = assert_refused_cleanly(response, url)
    assert response.status_code in (202, 429), response.status_code
    pending = list(PendingFetch.objects.filter(city=city).values_list("task_id", flat=True))
    assert len(pending) == 1
    assert published == pending, "one message, whichever request published it"
    if response.status_code == 202:
        assert answer["task_id"] == pending[0]


@pytest.mark.parametrize(
    ("proxies", "forwarded", "key"),
    [
        (0, "203.0.113.7", "ip:10.0.0.9"),  # no trusted proxy: the header is the client's word only
        (1, "203.0.113.7", "ip:203.0.113.7"),
        (2, "198.51.100.1, 203.0.113.7", "ip:198.51.100.1"),
        (1, "not-an-address", "ip:10.0.0.9"),
        (1, "\x00", "ip:10.0.0.9"),
        (2, "203.0.113.7", "ip:10.0.0.9"),  # fewer hops than trusted proxies
    ],
)
def test_the_rate_limit_key_trusts_only_real_addresses_from_trusted_proxies(proxies, forwarded, key):
    request = RequestFactory().post("/", REMOTE_ADDR="10.0.0.9", HTTP_X_FORWARDED_FOR=forwarded)
    with override_settings(NUM_TRUSTED_PROXIES=proxies):
        assert client_key(request) == key


@pytest.mark.django_db
@settings(DB, max_examples=60)
@given(segment=SEGMENTS, headers=HEADERS)
def test_api_city_detail_of_anything_but_a_city_is_a_json_404(no_publish: None, segment: str,
                                                              headers: dict[str, str]) -> None:
    url = f"/api/cities/{quote(segment, safe='')}"
    response = request_writes_nothing(lambda: Client().get(url, headers=headers))
    assert_refused_cleanly(response, url)
    assert response.status_code == 404


@pytest.mark.django_db
@settings(DB, max_examples=60)
@given(segment=SEGMENTS, enforce_csrf=st.booleans(), csrf_cookie=st.booleans(), body=REQUEST_BODIES,
       content_type=CONTENT_TYPES, headers=HEADERS.map(lambda h: {k: v for k, v in h.items() if k != "Cookie"}))
def test_dashboard_refresh_checks_csrf_first_and_never_fails(
    no_publish: None, segment: str, enforce_csrf: bool, csrf_cookie: bool, body: bytes, content_type: str,
    headers: dict[str, str],
) -> None:
    client = Client(enforce_csrf_checks=enforce_csrf)
    if csrf_cookie:
        # A well-formed cookie makes the CSRF check read the POST body: the malformed-body path.
        client.cookies["csrftoken"] = "a" * 32
    url = f"/cities/{quote(segment, safe='')}/refresh"
    response = request_writes_nothing(lambda: post(client, url, body, content_type, headers))
    assert_refused_cleanly(response, url)
    if enforce_csrf:
        # A browser form without a valid token: refused before the view (400 if the body is unreadable).
        assert response.status_code in (400, 403), response.status_code
    else:
        assert response.status_code == 404
        assert "error" in json.loads(response.content)


@pytest.mark.django_db
@settings(DB, max_examples=60)
@given(segment=st.one_of(SEGMENTS, st.uuids().map(lambda u: u.hex), st.uuids().map(lambda u: f"{{{u}}}")),
       headers=HEADERS)
def test_task_status_of_any_segment_is_pending_or_a_json_404(no_publish: None, segment: str,
                                                             headers: dict[str, str]) -> None:
    url = f"/api/tasks/{quote(segment, safe='')}"
    response = request_writes_nothing(lambda: Client().get(url, headers=headers))
    body = assert_refused_cleanly(response, url)
    if _is_uuid(segment):
        # A well-formed id nobody ran: PENDING, as Celery says of any unknown task.
        assert response.status_code == 200
        assert body is not None
        assert body["state"] == "PENDING"
    else:
        assert response.status_code == 404


# A NUL in q (PostgreSQL text cannot hold one) has a test of its own below.
Q_TEXT = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")
PARAM_VALUES = st.one_of(
    st.text(TEXT, max_size=30),
    st.integers(min_value=-(10**25), max_value=10**25).map(str),
    st.sampled_from(["", "0", "-1", "1", "2", "1.5", "1e2", " 2 ", "1_0", "\u0663", "200", "201", "NaN", "inf",
                     "9" * 5000, "\x00", "0x10"]),
)
LIST_PARAMS = st.fixed_dictionaries({}, optional={
    "page": PARAM_VALUES,
    "page_size": PARAM_VALUES,
    "q": st.text(Q_TEXT, max_size=150),
    "unexpected": PARAM_VALUES,
})
# Raw query strings, not built by urlencode: stray &, =, ;, broken escapes (never %00, see above).
RAW_QUERIES = st.text(st.sampled_from(string.ascii_letters + string.digits + "&=;%+._-~!*'(),[]"), max_size=60
                      ).filter(lambda raw: "%00" not in raw)


def _query(params: dict[str, str] | str) -> str:
    return params if isinstance(params, str) else urlencode(params)


@pytest.mark.django_db
@settings(DB, max_examples=80)
@given(params=st.one_of(LIST_PARAMS, RAW_QUERIES), headers=HEADERS)
def test_city_list_answers_any_query_string_in_json(no_publish: None, params: dict[str, str] | str,
                                                    headers: dict[str, str]) -> None:
    url = f"/api/cities/?{_query(params)}"
    response = request_writes_nothing(lambda: Client().get(url, headers=headers))
    body = assert_refused_cleanly(response, url)
    assert body is not None
    assert response.status_code in (200, 400, 404), response.status_code


@pytest.mark.django_db
@settings(DB, max_examples=50)
@given(params=st.one_of(LIST_PARAMS, RAW_QUERIES), headers=HEADERS)
def test_dashboard_answers_any_query_string(no_publish: None, params: dict[str, str] | str,
                                            headers: dict[str, str]) -> None:
    url = f"/?{_query(params)}"
    response = request_writes_nothing(lambda: Client().get(url, headers=headers))
    assert_refused_cleanly(response, url)
    # Paginator.get_page() turns any bad page into a valid one: the dashboard always renders.
    assert response.status_code == 200


INVALID_DAYS = st.one_of(
    st.text(TEXT, max_size=30),
    st.dates().map(lambda day: day.isoformat() + "x"),
    st.sampled_from(["2024-02-30", "2023-02-29", "2024-13-01", "2024-00-10", "0000-01-01", "10000-01-01",
                     "2024-1-1", "today", "yesterday", " 2024-01-01", "2024-01-01 ", "2024-01-01T00:00",
                     "2024/01/01", "01-01-2024", "\x00", "2024-01-01\x00", "null"]),
).filter(lambda day: day != "" and not _is_iso_date(day))  # "" and any real date would publish a chain


@pytest.mark.django_db
@settings(DB, max_examples=60)
@given(day=INVALID_DAYS, extra=st.dictionaries(st.sampled_from(["x", "page", "days"]), PARAM_VALUES, max_size=2),
       body=REQUEST_BODIES, content_type=CONTENT_TYPES, headers=HEADERS)
def test_daily_summary_refuses_every_invalid_day_in_json(
    no_publish: None, day: str, extra: dict[str, str], body: bytes, content_type: str, headers: dict[str, str]
) -> None:
    url = f"/api/etl/daily-summary?{urlencode({**extra, 'day': day})}"
    response = request_writes_nothing(lambda: post(Client(), url, body, content_type, headers))
    assert_refused_cleanly(response, url)
    assert response.status_code == 400


# Every URL with the methods its view accepts (Django upper-cases the method before the check).
# HEAD is never sent to a GET URL: HTTP lets a server treat it as GET (require_safe), so it is no wrong method.
READ = {"GET", "HEAD"}
ENDPOINT_METHODS = {
    "/api/cities/": READ,
    "/api/cities/1": READ,
    "/api/cities/1/refresh": {"POST"},
    f"/api/tasks/{uuid.UUID(int=0)}": READ,
    "/api/etl/daily-summary": {"POST"},
    "/": READ,
    "/cities/1/refresh": {"POST"},
    "/healthz": READ,
    "/readyz": READ,
    "/metrics": READ,
}
API_ENDPOINTS = sorted(url for url in ENDPOINT_METHODS if url.startswith("/api/"))
METHODS = st.one_of(
    st.sampled_from(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "PROPFIND"]),
    st.text(st.sampled_from(string.ascii_letters), min_size=1, max_size=10),
)


@st.composite
def wrong_method_requests(draw: st.DrawFn, urls: list[str]) -> tuple[str, str]:
    """A URL and a method its view refuses."""
    url = draw(st.sampled_from(urls))
    method = draw(METHODS.filter(lambda m: m.upper() not in ENDPOINT_METHODS[url]))
    return url, method


@pytest.mark.django_db
@settings(DB, max_examples=60)
@given(call=wrong_method_requests(sorted(ENDPOINT_METHODS)), body=REQUEST_BODIES, headers=HEADERS)
def test_wrong_methods_are_refused_before_any_work(no_publish: None, call: tuple[str, str], body: bytes,
                                                   headers: dict[str, str]) -> None:
    url, method = call
    response = request_writes_nothing(
        lambda: Client().generic(method, url, body, content_type="application/octet-stream", headers=headers))
    assert response.status_code == 405, (method, url, response.status_code)
    assert method.upper() not in {allowed.strip() for allowed in response["Allow"].split(",")}


# --- 3b. HTTP edge cases found by fuzzing, now fixed ------------------------------------------------------------


@pytest.mark.django_db
@settings(DB, max_examples=10, phases=NO_SHRINK)
@given(call=wrong_method_requests(API_ENDPOINTS))
def test_wrong_methods_on_the_api_are_answered_in_json(no_publish: None, call: tuple[str, str]) -> None:
    url, method = call
    assert_refused_cleanly(request_writes_nothing(lambda: Client().generic(method, url)), url)


@pytest.mark.django_db
@settings(DB, max_examples=10, phases=NO_SHRINK)
@given(head=st.text(TEXT, max_size=10), tail=st.text(TEXT, max_size=10),
       template=st.sampled_from(["/api/cities/{}/refresh", "/api/tasks/{}", "/api/cities/{}"]))
def test_an_id_with_a_slash_is_answered_in_json(no_publish: None, head: str, tail: str, template: str) -> None:
    # quote(safe="") sends %2F, but the path is percent-decoded before routing: the route no longer matches.
    url = template.format(quote(f"{head}/{tail}", safe=""))
    method = "POST" if url.endswith("/refresh") else "GET"
    assert_refused_cleanly(request_writes_nothing(lambda: Client().generic(method, url)), url)


@pytest.mark.django_db
@settings(DB, max_examples=10, phases=NO_SHRINK)
@given(head=st.text(Q_TEXT, max_size=20), tail=st.text(Q_TEXT, max_size=20), url=st.sampled_from(["/api/cities/",
                                                                                                  "/"]))
def test_a_nul_in_the_search_is_refused_cleanly(no_publish: None, head: str, tail: str, url: str) -> None:
    full = f"{url}?{urlencode({'q': head + chr(0) + tail})}"
    assert_refused_cleanly(request_writes_nothing(lambda: Client().get(full)), full)


@pytest.mark.django_db
@settings(DB, max_examples=20, phases=NO_SHRINK)
@given(charset=st.sampled_from(["base64", "hex", "rot13", "zlib", "bz2", "quopri", "uu", "utf-8\x00", "utf-16"]),
       call=st.sampled_from([("GET", "/api/cities/?page=1"), ("GET", "/?q=x"), ("POST", "/api/cities/x/refresh?a=1"),
                             ("POST", "/api/etl/daily-summary?day=never")]))
def test_a_charset_that_would_break_decoding_is_refused_before_django(no_publish: None, charset: str,
                                                                      call: tuple[str, str]) -> None:
    # Through the real WSGI application: Django's request constructor itself raises on these
    # charsets, before any middleware, so the guard sits in front of Django (server_config/wsgi.py).
    from server_config.wsgi import application

    method, url = call
    path, _, query = url.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
        "CONTENT_TYPE": f"application/json; charset={charset}", "CONTENT_LENGTH": "2",
        "wsgi.input": io.BytesIO(b"{}"),
    }
    setup_testing_defaults(environ)
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        answer.update(status=status, headers=dict(headers))

    before = row_counts()
    body = b"".join(application(environ, start_response))
    assert row_counts() == before
    assert answer["status"].startswith("415"), (charset, url, answer)
    if path.startswith("/api/"):
        assert "charset" in json.loads(body)["error"]


@pytest.mark.django_db
@settings(DB, max_examples=10, phases=NO_SHRINK)
@given(day=INVALID_DAYS, charset=st.sampled_from(["utf-16", "utf-16-le", "utf-16-be"]))
def test_an_invalid_day_is_refused_whatever_the_declared_charset(no_publish: None, day: str, charset: str) -> None:
    # The no_publish guard stops the chain before the broker: the request fails with its AssertionError.
    query = urlencode({"day": day})
    if len(query) % 2:
        query += "&"  # an even length decodes as UTF-16 without error (an odd one falls back to latin-1)
    url = f"/api/etl/daily-summary?{query}"
    # A non-empty body: the test client sends no Content-Type at all with an empty one.
    response = request_writes_nothing(lambda: post(Client(), url, b"{}", f"application/json; charset={charset}", {}))
    assert_refused_cleanly(response, url)
    assert response.status_code == 415  # refused before anything decodes the query string


# --- 4. City coordinates ------------------------------------------------------------------------------------

OUT_OF_RANGE = {
    "latitude": st.one_of(st.floats(min_value=90, exclude_min=True), st.floats(max_value=-90, exclude_max=True),
                          st.sampled_from([math.nan, math.inf, -math.inf])),
    "longitude": st.one_of(st.floats(min_value=180, exclude_min=True), st.floats(max_value=-180, exclude_max=True),
                           st.sampled_from([math.nan, math.inf, -math.inf])),
}
IN_RANGE = {"latitude": st.floats(min_value=-90, max_value=90), "longitude": st.floats(min_value=-180, max_value=180)}


def _city(**coordinates: float) -> City:
    return City(name="Fuzzville", country_code="FR", **{"latitude": 1.0, "longitude": 1.0, **coordinates})


@pytest.mark.django_db
@settings(DB, max_examples=60)
@given(data=st.data(), field=st.sampled_from(["latitude", "longitude"]))
def test_a_city_outside_the_globe_fails_full_clean(data: st.DataObject, field: str) -> None:
    value = data.draw(OUT_OF_RANGE[field], label=field)
    with pytest.raises(ValidationError) as raised:
        _city(**{field: value}).full_clean()
    # Named by the field's validator, or (NaN, which compares false both ways) by the range constraint.
    messages = raised.value.message_dict
    assert field in messages or f"city_{field}_range" in " ".join(messages.get("__all__", [])), messages


@pytest.mark.django_db
@settings(DB, max_examples=60)
@given(latitude=IN_RANGE["latitude"], longitude=IN_RANGE["longitude"])
def test_a_city_on_the_globe_passes_full_clean(latitude: float, longitude: float) -> None:
    _city(latitude=latitude, longitude=longitude).full_clean()


@settings(BASE, max_examples=5, phases=NO_SHRINK)
@given(field=st.sampled_from(["latitude", "longitude"]))
def test_the_coordinate_validators_refuse_nan(field: str) -> None:
    # Without the database's constraint check, as on SQLite where NaN is stored as NULL and passes the CHECK.
    city = _city(**{field: math.nan})
    error = outcome_of(lambda: city.full_clean(validate_unique=False, validate_constraints=False), ValidationError)
    assert isinstance(error, ValidationError), f"{field}=nan passed the field validators"
    assert field in error.message_dict, error.message_dict
