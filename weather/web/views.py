"""HTML pages: the dashboard for everyone, the operator's view for staff."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from django.contrib.admin.views.decorators import staff_member_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_POST, require_safe

from routing import Priority

from .charts import sparkline_points
from .dispatch import PENDING_FETCH_TTL
from .listing import matching, page_with_latest
from .models import WeatherData
from .ops import BrokerUnreachableError, lanes_status
from .views import enqueue_refresh, error_response, search_term

PAGE_SIZE = 25
HISTORY = timedelta(hours=48)


@require_safe
def dashboard(request: HttpRequest) -> HttpResponse:
    """Cities with their latest reading and a temperature sparkline; searchable, paginated."""
    query = search_term(request)
    cities = matching(query).order_by("-population", "name", "pk")
    page = page_with_latest(Paginator(cities, PAGE_SIZE), request.GET.get("page"), lenient=True)
    ids = [city.pk for city in page.object_list]
    history: dict[int, list] = defaultdict(list)
    since = timezone.now() - HISTORY
    for city_id, observed_at, temperature in (
        WeatherData.objects.filter(city_id__in=ids, observed_at__gte=since)
        .order_by("city_id", "observed_at").values_list("city_id", "observed_at", "temperature")
    ):
        history[city_id].append((observed_at, temperature))
    rows = [{"city": city, "points": sparkline_points(history[city.pk])} for city in page.object_list]
    # The page stops following a fetch when the server would presume it lost.
    give_up_ms = int(PENDING_FETCH_TTL.total_seconds() * 1000)
    return render(request, "weather/dashboard.html",
                  {"page": page, "rows": rows, "query": query, "give_up_ms": give_up_ms})


@require_POST
def dashboard_refresh(request: HttpRequest, city_id: str) -> JsonResponse:
    """The dashboard's Refresh button: a person's click, CSRF-checked, at the highest priority."""
    return enqueue_refresh(request, city_id, Priority.CLICK)


@staff_member_required
@require_safe
def ops(request: HttpRequest) -> HttpResponse:
    """Lanes, pools, outcomes, schedules and dead letters at a glance."""
    try:
        status = lanes_status()
    except BrokerUnreachableError as error:
        return render(request, "weather/ops.html", {"error": str(error)}, status=503)
    return render(request, "weather/ops.html", {"status": status})


@require_safe
def ops_queues_json(request: HttpRequest) -> JsonResponse:
    """The operator's view as JSON (GET /api/ops/queues); staff only, refused in JSON otherwise."""
    if not (request.user.is_active and request.user.is_staff):
        return error_response(403, "staff only: sign in through /admin/ first")
    try:
        return JsonResponse(lanes_status())
    except BrokerUnreachableError as error:
        return error_response(503, str(error))
