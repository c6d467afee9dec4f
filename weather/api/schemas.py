"""Typed request and response bodies of the JSON API; the OpenAPI document is generated from these."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ninja import Schema

from weather.http import Problem

__all__ = ["Accepted", "City", "CityDetail", "CityPage", "Problem", "RefreshAccepted", "TaskStatus"]


# On an operation whose 202 names a task: the OpenAPI document links the task id to
# the operation that reports its state, so clients (and schemathesis) can follow it.
FOLLOW_TASK = {"responses": {202: {"links": {"TaskStatus": {
    "operationId": "task_status", "parameters": {"task_id": "$response.body#/task_id"}}}}}}


class Accepted(Schema):
    """A task was queued (or an identical one already was): follow `status_url` to its end."""

    task_id: str
    status_url: str
    deduplicated: bool


class RefreshAccepted(Accepted):
    """A city's fetch was queued."""

    city_id: int


class Reading(Schema):
    """One observation of a city's current conditions."""

    temperature: float
    humidity: float
    pressure: float
    observed_at: datetime


class StoredReading(Reading):
    """A reading with the time it was fetched."""

    fetched_at: datetime


class City(Schema):
    """A place whose weather the service tracks."""

    id: int
    name: str
    country_code: str
    latitude: float
    longitude: float


class CityWithLatest(City):
    """A city and its latest reading, if any."""

    latest: Reading | None


class CityDetail(City):
    """A city and its latest stored reading, if any."""

    latest: StoredReading | None


class CityPage(Schema):
    """One page of cities."""

    count: int
    page: int
    pages: int
    results: list[CityWithLatest]


class TaskStatus(Schema):
    """A task's state, with its result when it succeeded or its error when it failed."""

    task_id: str
    state: str
    result: Any = None
    error: str | None = None
    date_started: datetime | None = None
    date_done: datetime | None = None
    run_seconds: float | None = None
