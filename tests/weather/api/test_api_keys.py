"""Starting the ETL chain: staff or an API key (hashed, revocable, rate-limited), one chain a day at a time."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode

import pytest
from celery.canvas import _chain
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from weather import dispatch
from weather.apikeys import active_key, issue_key, revoke
from weather.models import DailySummaryRun

URL = "/api/etl/daily-summary"


@pytest.fixture
def chains(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Ids of the chains the endpoint publishes, recorded instead of sent."""
    sent: list[str] = []

    def record(workflow: object, *args: object, **kwargs: object) -> None:
        sent.append(workflow.tasks[-1].options["task_id"])  # type: ignore[attr-defined]

    monkeypatch.setattr(_chain, "apply_async", record)
    return sent


def test_a_key_is_stored_only_as_a_hash(db) -> None:
    row, key = issue_key("reporting")
    assert key not in (row.prefix, row.hashed_key)
    assert row.hashed_key != key
    assert len(row.hashed_key) == 64
    assert active_key(key) == row
    assert active_key(key[:-1] + ("a" if key[-1] != "a" else "b")) is None


@pytest.mark.django_db(transaction=True)
def test_without_a_key_or_a_staff_session_the_start_is_refused_in_json(chains: list[str]) -> None:
    anonymous = Client(enforce_csrf_checks=True).post(URL)
    assert anonymous.status_code == 401
    assert "API key" in anonymous.json()["error"]
    unknown = Client().post(URL, headers={"X-API-Key": "not-a-key-at-all"})
    assert unknown.status_code == 401
    plain_user = User.objects.create_user("reader")
    client = Client(enforce_csrf_checks=True)
    client.force_login(plain_user)
    assert client.post(URL).status_code == 401
    assert chains == []


@pytest.mark.django_db(transaction=True)
def test_a_revoked_key_is_refused(chains: list[str]) -> None:
    row, key = issue_key("old client")
    assert Client().post(URL, headers={"X-API-Key": key}).status_code == 202
    revoke(row)
    refused = Client().post(URL, headers={"X-API-Key": key})
    assert refused.status_code == 401
    assert refused.json()["error"]
    assert len(chains) == 1


@pytest.mark.django_db(transaction=True)
def test_a_key_over_its_own_limit_gets_429(chains: list[str]) -> None:
    _, slow_key = issue_key("slow", rate_limit_per_minute=2)
    _, other_key = issue_key("other", rate_limit_per_minute=2)
    answers = [Client().post(URL, headers={"X-API-Key": slow_key}) for _ in range(3)]
    assert [a.status_code for a in answers] == [202, 202, 429]
    assert int(answers[2]["Retry-After"]) >= 1
    assert answers[2].json()["retry_after"] >= 1
    # Each key has its own limit.
    assert Client().post(URL, headers={"X-API-Key": other_key}).status_code == 202


@pytest.mark.django_db(transaction=True)
def test_a_second_start_for_the_same_day_gets_the_running_chain(chains: list[str]) -> None:
    _, key = issue_key("etl")
    first = Client().post(URL, headers={"X-API-Key": key}).json()
    again = Client().post(URL, headers={"X-API-Key": key}).json()
    assert (first["deduplicated"], again["deduplicated"]) == (False, True)
    assert again["task_id"] == first["task_id"] == chains[0]
    assert len(chains) == 1
    yesterday = (timezone.now().date() - timedelta(days=1)).isoformat()
    other_day = Client().post(f"{URL}?day={yesterday}", headers={"X-API-Key": key}).json()
    assert other_day["task_id"] != first["task_id"]
    # A chain presumed lost no longer blocks its day.
    DailySummaryRun.objects.filter(task_id=first["task_id"]).update(
        started_at=timezone.now() - dispatch.DAILY_SUMMARY_TTL - timedelta(seconds=1))
    restarted = Client().post(URL, headers={"X-API-Key": key}).json()
    assert (restarted["deduplicated"], restarted["task_id"] != first["task_id"]) == (False, True)
    assert len(chains) == 3


@pytest.mark.django_db(transaction=True)
def test_a_staff_session_starts_it_with_csrf(chains: list[str]) -> None:
    operator = User.objects.create_user("operator", is_staff=True)
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    assert client.post(URL).status_code == 403  # a cookie alone could be a forged request
    client.cookies["csrftoken"] = token = "a" * 32  # what a page of ours would have set
    accepted = client.post(URL, headers={"X-CSRFToken": token})
    assert accepted.status_code == 202, accepted.content
    assert accepted.json()["status_url"] == f"/api/tasks/{accepted.json()['task_id']}"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("day", [
    "20200101", "9999-12-31", "1970-01-01", "2024-02-30", "\uff12\uff10\uff12\uff14-01-01"])
def test_days_outside_the_readings_kept_or_not_dates_are_400(chains: list[str], day: str) -> None:
    _, key = issue_key("etl")
    refused = Client().post(f"{URL}?{urlencode({'day': day})}", headers={"X-API-Key": key})
    assert refused.status_code == 400, (day, refused.content)
    assert refused.json()["error"]
    assert chains == []
