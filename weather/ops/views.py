"""The operator's page (staff): lanes first, then doctor, dead letters, login lockouts and schedules."""

from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_safe

from routing.broker import BrokerUnavailableError
from weather.charts import bar_heights, sparkline_points
from weather.lanesamples import lane_history, wait_p95_per_minute

from .doctor.checkup import recent_findings
from .doctor.findings import OK, SEVERITY
from .lockouts import current_lockouts
from .status import RECENT, lanes_status

# The lane cards' bar chart: 12 bars of 8 px, 10 px apart, in a 120 x 30 box.
CHART_HEIGHT, BAR_STEP = 30, 10


@staff_member_required
@require_safe
def ops(request: HttpRequest) -> HttpResponse:
    """The lanes first, then doctor (failures and warnings first, ok folded), lockouts and schedules.

    503 naming the broker when it is away.
    """
    findings = recent_findings()
    # Worst first, in doctor's own order within a severity (Python's sort is stable).
    attention = sorted((f for f in findings if f.status != OK), key=lambda f: -SEVERITY[f.status])
    context = {"attention": attention, "fine": [f for f in findings if f.status == OK],
               "lockouts": current_lockouts()}
    try:
        status = lanes_status()
    except BrokerUnavailableError as error:
        return render(request, "weather/ops.html", {**context, "error": str(error)}, status=503)
    since = timezone.now() - RECENT
    for lane in status["lanes"]:
        history = lane_history(lane["lane"], since)
        lane["samples"] = len(history)
        lane["depth_points"] = sparkline_points([(s.sampled_at, s.depth) for s in history])
        lane["consumer_points"] = sparkline_points([(s.sampled_at, s.consumers) for s in history
                                                    if s.consumers is not None])
        waits = wait_p95_per_minute(history)
        lane["wait_points"] = sparkline_points(waits)
        lane["wait_shared"] = any(s.wait_buckets is not None for s in history)
        lane["wait_p95_max"] = max((p95 for _, p95 in waits), default=None)
        lane["throughput_bars"] = [{"x": index * BAR_STEP, "y": CHART_HEIGHT - height, "height": height, "count": count}
                                   for index, (height, count) in enumerate(zip(
                                       bar_heights(lane["throughput"], CHART_HEIGHT), lane["throughput"], strict=True))]
    return render(request, "weather/ops.html", {**context, "status": status})
