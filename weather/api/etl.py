"""/api/etl/daily-summary: start the extract -> transform -> load chain for a day (staff or API key)."""

from __future__ import annotations

from datetime import date, timedelta

from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone
from ninja import Query, Router, Status

from routing.broker import BrokerUnavailableError
from weather.dispatch import enqueue_daily_summary
from weather.http import ProblemError, accepted, queue_unavailable

from .auth import STAFF_OR_KEY
from .schemas import FOLLOW_TASK, Accepted, Problem

router = Router(tags=["etl"])

# A day as YYYY-MM-DD in ASCII digits: date.fromisoformat alone also takes 20200101.
ISO_DAY = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"


def summary_day(raw: str | None) -> date:
    """The UTC day to summarise: today by default, else a real date within the readings kept."""
    today = timezone.now().date()
    if raw is None:
        return today
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise ProblemError(400, f"day {raw[:20]!r} is not a date (YYYY-MM-DD)") from None
    oldest = today - timedelta(days=settings.WEATHER_RETENTION_DAYS)
    if not oldest <= day <= today:
        raise ProblemError(400, f"day must be between {oldest} and {today}: readings older than "
                                f"{settings.WEATHER_RETENTION_DAYS} days are not kept")
    return day


@router.post("/daily-summary", auth=STAFF_OR_KEY,
             response={202: Accepted, 400: Problem, 401: Problem, 403: Problem, 429: Problem, 503: Problem},
             operation_id="daily_summary_start", url_name="daily_summary_start", openapi_extra=FOLLOW_TASK)
def daily_summary_start(request: HttpRequest, day: str | None = Query(
        None, pattern=ISO_DAY, description="UTC day, YYYY-MM-DD (default: today)")) -> Status:
    """Start the daily summary of a UTC day; while one runs for that day, answer with its task id."""
    try:
        enqueued = enqueue_daily_summary(summary_day(day))
    except BrokerUnavailableError as error:
        raise queue_unavailable(error) from None
    return Status(202, accepted(enqueued))
