"""Shared hypothesis strategies and helpers for the bad-input tests of every surface."""

from __future__ import annotations

import codecs
import json
import string
import uuid
from collections.abc import Callable
from datetime import date
from typing import Any
from urllib.parse import urlencode

from django.http import HttpResponse
from django.test import Client
from django.utils.http import parse_header_parameters
from django_celery_results.models import TaskResult
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from weather.models import City, DailySummary, PendingFetch, RateWindow, RefreshRun, WeatherData

# Derandomized, so every run (and CI) tries the same examples; no example database on disk, so a
# failure prints a @reproduce_failure blob instead.
BASE = settings(database=None, deadline=None, print_blob=True, derandomize=True)
# The Django tests share pytest-django's db fixture (and monkeypatch) across examples on purpose:
# every example compares row counts before and after itself, so a shared transaction is fine.
DB = settings(BASE, suppress_health_check=[HealthCheck.function_scoped_fixture])
# For the edge-case tests the first failing example says it all; shrinking would only spend time.
NO_SHRINK = (Phase.explicit, Phase.generate)

# Every table a request could write to, directly or through a task it enqueues.
WATCHED_MODELS = (City, WeatherData, DailySummary, PendingFetch, RateWindow, RefreshRun, TaskResult)

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


def outcome_of(call: Callable[[], object], expected: type[Exception]) -> object:
    """What the call returned, or the expected exception it raised (any other exception propagates)."""
    try:
        return call()
    except expected as error:
        return error


def _json_bytes(value: Any) -> bytes:
    # allow_nan (the default) writes NaN/Infinity, which Python's json (and so requests) reads back.
    return json.dumps(value).encode()



def row_counts() -> dict[str, int]:
    """Rows in every table a request could write to."""
    return {model.__name__: model.objects.count() for model in WATCHED_MODELS}


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
})  # Not Content-Length: the web server refuses a malformed one itself; the test client would hand it to Django raw.
REQUEST_BODIES = st.one_of(
    st.binary(max_size=300),
    st.text(TEXT, max_size=200).map(str.encode),
    JSON_VALUES.map(_json_bytes),
    st.sampled_from([b"", b"{", b"--BoUnDaRy\r\n", b"csrfmiddlewaretoken=x&city_id=1", b"a=" + b"b" * 3_000_000]),
)


def post(client: Client, url: str, body: bytes, content_type: str, headers: dict[str, str]) -> HttpResponse:
    # generic(), not post(): post() re-encodes the body with the charset from content_type.
    return client.generic("POST", url, body, content_type=content_type, headers=headers)


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


INVALID_DAYS = st.one_of(
    st.text(TEXT, max_size=30),
    st.dates().map(lambda day: day.isoformat() + "x"),
    st.sampled_from(["2024-02-30", "2023-02-29", "2024-13-01", "2024-00-10", "0000-01-01", "10000-01-01",
                     "2024-1-1", "today", "yesterday", " 2024-01-01", "2024-01-01 ", "2024-01-01T00:00",
                     "2024/01/01", "01-01-2024", "\x00", "2024-01-01\x00", "null"]),
).filter(lambda day: day != "" and not _is_iso_date(day))  # "" and any real date would publish a chain


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


