"""The JSON API: refresh a city, read a task's state, list cities, start the ETL chain."""

from __future__ import annotations

import uuid as uuid_lib
from datetime import date

from celery.result import AsyncResult
from celery.states import READY_STATES
from django.conf import settings
from django.core.paginator import EmptyPage, Paginator
from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST, require_safe
from django_celery_results.models import TaskResult

from routing import Priority

from .dispatch import BrokerUnavailableError, enqueue_city_fetch, enqueue_daily_summary
from .listing import matching, page_with_latest
from .models import City, WeatherData
from .ratelimit import client_key, hit
from .refresh import UnknownCityError

MAX_PAGE_SIZE = 200
DEFAULT_PAGE_SIZE = 50


def error_response(status: int, message: str, **extra: object) -> JsonResponse:
    """A JSON error body: {"error": message, ...}."""
    return JsonResponse({"error": message, **extra}, status=status)


def _task_accepted(task_id: str, **extra: object) -> JsonResponse:
    status_url = reverse("api-task-status", args=[task_id])
    return JsonResponse({"task_id": task_id, "status_url": status_url, **extra}, status=202)


def search_term(request: HttpRequest) -> str:
    """The ?q= search, trimmed; NULs dropped (PostgreSQL text cannot hold them)."""
    return request.GET.get("q", "").replace("\x00", "").strip()[:100]


def _positive_int(raw: str) -> int | None:
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 19 else None


def _positive_int_or_404(city_id: str) -> int | JsonResponse:
    pk = _positive_int(city_id)
    if pk is None or not City.objects.filter(pk=pk).exists():
        return error_response(404, f"no city with id {city_id[:32]!r}")
    return pk


def enqueue_refresh(request: HttpRequest, city_id: str, priority: Priority) -> JsonResponse:
    """The refresh flow shared by the API and the dashboard: validate, rate-limit, enqueue."""
    pk = _positive_int_or_404(city_id)
    if isinstance(pk, JsonResponse):
        return pk
    wait = hit(client_key(request), settings.REFRESH_RATE_LIMIT_PER_MINUTE)
    if wait is not None:
        response = error_response(429, "too many refresh requests; slow down", retry_after=wait)
        response["Retry-After"] = str(wait)
        return response
    try:
        enqueued = enqueue_city_fetch(pk, priority)
    except UnknownCityError:
        return error_response(404, f"no city with id {city_id[:32]!r}")
    except BrokerUnavailableError:
        response = error_response(503, "the task queue is unavailable; try again shortly", retry_after=5)
        response["Retry-After"] = "5"
        return response
    return _task_accepted(enqueued.task_id, city_id=pk, deduplicated=enqueued.deduplicated)


@csrf_exempt  # API clients send no session cookie; the rate limit, de-duplication and quota guard it
@require_POST
def refresh_city(request: HttpRequest, city_id: str) -> JsonResponse:
    """Enqueue a fetch of one city at API priority; 202 with the task id."""
    return enqueue_refresh(request, city_id, Priority.API)


@require_safe
def city_detail(request: HttpRequest, city_id: str) -> JsonResponse:
    """One city with its latest reading."""
    pk = _positive_int_or_404(city_id)
    if isinstance(pk, JsonResponse):
        return pk
    city = City.objects.get(pk=pk)
    latest = WeatherData.objects.filter(city=city).order_by("-observed_at").first()
    return JsonResponse({**_city_json(city), "latest": _reading_json(latest)})


def _city_json(city: City) -> dict:
    return {"id": city.pk, "name": city.name, "country_code": city.country_code,
            "latitude": city.latitude, "longitude": city.longitude}


def _reading_json(reading: WeatherData | None) -> dict | None:
    if reading is None:
        return None
    return {"temperature": reading.temperature, "humidity": reading.humidity, "pressure": reading.pressure,
            "observed_at": reading.observed_at.isoformat(), "fetched_at": reading.fetched_at.isoformat()}


def _describe(result: AsyncResult) -> dict:
    body: dict = {"task_id": result.id, "state": result.state}
    if result.state == "SUCCESS":
        body["result"] = result.result
    elif result.state in ("FAILURE", "RETRY"):
        error = result.result
        body["error"] = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error)
    # PENDING means no result row yet: nothing more to read on the hottest poll.
    times = None if result.state == "PENDING" else (
        TaskResult.objects.filter(task_id=result.id).values_list("date_started", "date_done").first())
    started, done = times or (None, None)
    if started:
        body["date_started"] = started.isoformat()
    if done:
        body["date_done"] = done.isoformat()
    if started and done and result.state in READY_STATES:
        # The start is stamped by the database, the end by the worker: across hosts
        # whose clocks drift this is approximate, never negative.
        body["run_seconds"] = round(max(0.0, (done - started).total_seconds()), 3)
    return body


@require_safe
def task_status(request: HttpRequest, task_id: str) -> JsonResponse:
    """The state of a task (PENDING, STARTED, RETRY, SUCCESS, FAILURE) with its result or error."""
    try:
        uuid_lib.UUID(task_id)
    except ValueError:
        return error_response(404, f"{task_id[:64]!r} is not a task id")
    return JsonResponse(_describe(AsyncResult(task_id)))


@require_safe
def city_list(request: HttpRequest) -> JsonResponse:
    """Cities with their latest reading, paginated (?page=, ?page_size=, ?q=)."""
    try:
        page_number = int(request.GET.get("page", "1"))
        page_size = int(request.GET.get("page_size", str(DEFAULT_PAGE_SIZE)))
    except ValueError:
        return error_response(400, "page and page_size must be integers")
    if page_number < 1 or not 1 <= page_size <= MAX_PAGE_SIZE:
        return error_response(400, f"page must be >= 1 and page_size between 1 and {MAX_PAGE_SIZE}")
    paginator = Paginator(matching(search_term(request)).order_by("name", "pk"), page_size)
    try:
        page = page_with_latest(paginator, page_number)
    except EmptyPage:
        return error_response(404, f"page {page_number} is past the last page ({paginator.num_pages})")
    return JsonResponse({
        "count": page.paginator.count,
        "page": page.number,
        "pages": page.paginator.num_pages,
        "results": [
            {
                "id": city.pk,
                "name": city.name,
                "country_code": city.country_code,
                "latitude": city.latitude,
                "longitude": city.longitude,
                "latest": None if city.observed_at is None else {
                    "temperature": city.temperature,
                    "humidity": city.humidity,
                    "pressure": city.pressure,
                    "observed_at": city.observed_at.isoformat(),
                },
            }
            for city in page.object_list
        ],
    })


@csrf_exempt
@require_POST
def start_daily_summary(request: HttpRequest) -> JsonResponse:
    """Start extract -> transform -> load for a UTC day (?day=YYYY-MM-DD, default today)."""
    day = request.GET.get("day") or None
    if day is not None:
        try:
            day = date.fromisoformat(day).isoformat()
        except ValueError:
            return error_response(400, "day must be an ISO date (YYYY-MM-DD)")
    try:
        task_id = enqueue_daily_summary(day)
    except BrokerUnavailableError:
        return error_response(503, "the task queue is unavailable; try again shortly", retry_after=5)
    return _task_accepted(task_id)
