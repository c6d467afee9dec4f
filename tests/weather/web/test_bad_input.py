"""Bad input to the dashboard: it always renders or refuses cleanly, CSRF first; never a 500 or a write."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from django.test import Client
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzzing import (
    CONTENT_TYPES,
    DB,
    HEADERS,
    LIST_PARAMS,
    RAW_QUERIES,
    REQUEST_BODIES,
    SEGMENTS,
    _query,
    assert_refused_cleanly,
    post,
    request_writes_nothing,
)


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
@settings(DB, max_examples=50)
@given(params=st.one_of(LIST_PARAMS, RAW_QUERIES), headers=HEADERS)
def test_dashboard_answers_any_query_string(no_publish: None, params: dict[str, str] | str,
                                            headers: dict[str, str]) -> None:
    url = f"/?{_query(params)}"
    response = request_writes_nothing(lambda: Client().get(url, headers=headers))
    assert_refused_cleanly(response, url)
    # Paginator.get_page() turns any bad page into a valid one: the dashboard always renders.
    assert response.status_code == 200
