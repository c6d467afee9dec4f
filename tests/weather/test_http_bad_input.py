"""Bad input to every HTTP surface at once: wrong methods, charsets that break decoding, client keys."""

from __future__ import annotations

import io
import json
from typing import Any
from urllib.parse import urlencode
from wsgiref.util import setup_testing_defaults

import pytest
from django.test import Client, RequestFactory, override_settings
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzzing import (
    DB,
    ENDPOINT_METHODS,
    HEADERS,
    INVALID_DAYS,
    NO_SHRINK,
    Q_TEXT,
    REQUEST_BODIES,
    assert_refused_cleanly,
    post,
    request_writes_nothing,
    row_counts,
    wrong_method_requests,
)
from weather.http import client_key


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
@given(call=wrong_method_requests(sorted(ENDPOINT_METHODS)), body=REQUEST_BODIES, headers=HEADERS)
def test_wrong_methods_are_refused_before_any_work(no_publish: None, call: tuple[str, str], body: bytes,
                                                   headers: dict[str, str]) -> None:
    url, method = call
    response = request_writes_nothing(
        lambda: Client().generic(method, url, body, content_type="application/octet-stream", headers=headers))
    assert response.status_code == 405, (method, url, response.status_code)
    assert method.upper() not in {allowed.strip() for allowed in response["Allow"].split(",")}


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
