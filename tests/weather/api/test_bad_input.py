"""Bad input to the JSON API: a 4xx with the one JSON error shape, never a 500, never a write, never a publish."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote, urlencode

import pytest
from django.contrib.auth.models import User
from django.test import Client, override_settings
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzzing import (
    API_ENDPOINTS,
    CONTENT_TYPES,
    DB,
    HEADERS,
    INVALID_DAYS,
    LIST_PARAMS,
    NO_SHRINK,
    PARAM_VALUES,
    RAW_QUERIES,
    REQUEST_BODIES,
    SEGMENTS,
    TEXT,
    _is_uuid,
    _query,
    assert_refused_cleanly,
    post,
    request_writes_nothing,
    wrong_method_requests,
)
from weather.models import City, PendingFetch


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
@settings(DB, max_examples=60)
@given(day=INVALID_DAYS, extra=st.dictionaries(st.sampled_from(["x", "page", "days"]), PARAM_VALUES, max_size=2),
       body=REQUEST_BODIES, content_type=CONTENT_TYPES, headers=HEADERS)
def test_daily_summary_refuses_every_invalid_day_in_json(
    no_publish: None, day: str, extra: dict[str, str], body: bytes, content_type: str, headers: dict[str, str]
) -> None:
    # As a signed-in operator: without credentials every request is a 401 before the day is read.
    staff, _ = User.objects.get_or_create(username="etl-operator", defaults={"is_staff": True})
    client = Client()
    client.force_login(staff)
    headers = {k: v for k, v in headers.items() if k != "Cookie"}  # keep the session cookie
    url = f"/api/etl/daily-summary?{urlencode({**extra, 'day': day})}"
    response = request_writes_nothing(lambda: post(client, url, body, content_type, headers))
    assert_refused_cleanly(response, url)
    assert response.status_code == 400


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
@pytest.mark.parametrize("day", ["9999-12-31", "20200101", "2020-W01-1", "1900-01-01", "2020-001"])
def test_daily_summary_refuses_compact_and_out_of_range_days(no_publish: None, day: str) -> None:
    # date.fromisoformat takes all of these; a start must be a YYYY-MM-DD within the readings kept.
    staff, _ = User.objects.get_or_create(username="etl-operator", defaults={"is_staff": True})
    client = Client()
    client.force_login(staff)
    response = client.post(f"/api/etl/daily-summary?{urlencode({'day': day})}")
    assert response.status_code == 400, (day, response.content)
    assert "error" in response.json()


@pytest.mark.django_db
@pytest.mark.parametrize("number", ["+1", "1_0", " 1", "1 ", "1.0", "\uff11", "0x1"])
def test_ids_and_pages_are_ascii_digits_only(no_publish: None, number: str) -> None:
    # Parsed as the dashboard parses them: what int() or pydantic would also take is refused here.
    City.objects.create(pk=1, name="One", country_code="FR", latitude=1.0, longitude=1.0)
    City.objects.create(pk=10, name="Ten", country_code="FR", latitude=1.0, longitude=1.0)
    segment = quote(number, safe="")
    assert Client().get(f"/api/cities/{segment}").status_code == 404, number
    assert Client().post(f"/api/cities/{segment}/refresh").status_code == 404, number
    assert Client().get(f"/api/cities/?{urlencode({'page': number})}").status_code == 400, number
    assert Client().get(f"/api/cities/?{urlencode({'page_size': number})}").status_code == 400, number
