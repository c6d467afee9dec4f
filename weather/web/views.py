"""The dashboard: cities with their latest reading and sparkline, and the Refresh button's endpoint."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_POST, require_safe

from routing import Priority
from weather.charts import sparkline_points, value_range
from weather.dispatch import PENDING_FETCH_TTL
from weather.http import (
    ProblemError,
    accepted,
    positive_int,
    problem_response,
    search_term,
    unknown_city,
)
from weather.listing import matching, page_with_latest
from weather.models import WeatherData
from weather.refreshflow import request_refresh

PAGE_SIZE = 25
HISTORY = timedelta(hours=48)
# Decimals each reading is shown with, on the page and by the Refresh button's script alike
# (it reads them from the cells' data-decimals), so a number keeps its format after a Refresh.
DECIMALS = {"temperature": 1, "humidity": 0, "pressure": 1}


def formatted(value: float | None, field: str) -> str:
    """A reading's value as the page shows it, or an en dash when there is none yet."""
    return "\u2013" if value is None else f"{value:.{DECIMALS[field]}f}"


@require_safe
def dashboard(request: HttpRequest) -> HttpResponse:
    """Cities with their latest reading and a temperature sparkline; searchable, paginated."""
    query = search_term(request.GET.get("q", ""))
    cities = matching(query).order_by("-population", "name", "pk")
    # Parsed as strictly as every id and page (ASCII digits); the page shown is the nearest that exists.
    page = page_with_latest(Paginator(cities, PAGE_SIZE), positive_int(request.GET.get("page", "")) or 1,
                            lenient=True)
    ids = [city.pk for city in page.object_list]
    history: dict[int, list] = defaultdict(list)
    since = timezone.now() - HISTORY
    for city_id, observed_at, temperature in (
        WeatherData.objects.filter(city_id__in=ids, observed_at__gte=since)
        .order_by("city_id", "observed_at").values_list("city_id", "observed_at", "temperature")
    ):
        history[city_id].append((observed_at, temperature))
    rows = [{"city": city, "points": sparkline_points(history[city.pk]), "points_count": len(history[city.pk]),
             "range": value_range(history[city.pk], DECIMALS["temperature"]),
             "values": {field: formatted(getattr(city, field), field) for field in DECIMALS}}
            for city in page.object_list]
    # The page stops following a fetch when the server would presume it lost.
    give_up_ms = int(PENDING_FETCH_TTL.total_seconds() * 1000)
    return render(request, "weather/dashboard.html",
                  {"page": page, "rows": rows, "query": query, "give_up_ms": give_up_ms, "decimals": DECIMALS})


@require_POST
def dashboard_refresh(request: HttpRequest, city_id: str) -> JsonResponse:
    """The dashboard's Refresh button: a person's click, CSRF-checked, at the highest priority."""
    try:
        pk = positive_int(city_id)
        if pk is None:
            raise unknown_city(city_id)
        enqueued = request_refresh(request, pk, Priority.CLICK)
    except ProblemError as problem:
        return problem_response(problem)
    return JsonResponse(accepted(enqueued, city_id=pk), status=202)
