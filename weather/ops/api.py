"""/api/ops/queues: the operator's view as JSON, for staff; mounted on the API by the URL configuration."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Router, Schema

from routing.broker import BrokerUnavailableError
from weather.http import BROKER_RETRY_AFTER_S, Problem, ProblemError

from .status import lanes_status

router = Router(tags=["operations"])


class LanesStatus(Schema):
    """Lanes with depth, consumers, pool settings and recent outcomes; dead letters; schedules."""

    lanes: list[dict[str, Any]]
    dead_letter: dict[str, Any]
    schedules: list[dict[str, Any]]
    generated_at: str


@router.get("/queues", response={200: LanesStatus, 403: Problem, 503: Problem}, operation_id="ops_queues",
            url_name="ops_queues")
def ops_queues(request: HttpRequest) -> dict:
    """Lanes, pools, outcomes, schedules and dead letters (staff only; 503 when the broker is away)."""
    user = request.user
    if not (user.is_active and user.is_staff):
        raise ProblemError(403, "staff only: sign in through /admin/ first")
    try:
        return lanes_status()
    except BrokerUnavailableError as error:
        raise ProblemError(503, str(error), retry_after=BROKER_RETRY_AFTER_S) from None
