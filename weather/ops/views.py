"""The operator's page (staff): doctor, lanes, pools, outcomes, schedules, dead letters and login lockouts."""

from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from routing.broker import BrokerUnavailableError

from .doctor.checkup import recent_findings
from .lockouts import current_lockouts
from .status import lanes_status


@staff_member_required
@require_safe
def ops(request: HttpRequest) -> HttpResponse:
    """Lanes, pools, outcomes, schedules and dead letters at a glance; 503 naming the broker when it is away."""
    context = {"doctor": recent_findings(), "lockouts": current_lockouts()}
    try:
        context["status"] = lanes_status()
    except BrokerUnavailableError as error:
        return render(request, "weather/ops.html", {**context, "error": str(error)}, status=503)
    return render(request, "weather/ops.html", context)
