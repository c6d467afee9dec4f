"""/api/cities/: list and read cities, and ask for a city's fresh reading."""

from __future__ import annotations

from django.core.paginator import EmptyPage, Paginator
from django.http import HttpRequest
from ninja import Path, Query, Router, Status

from routing import Priority
from weather.http import MAX_ID, ProblemError, StrictInt, accepted, search_term, unknown_city
from weather.listing import LATEST_FIELDS, matching, page_with_latest
from weather.models import City, WeatherData
from weather.refreshflow import request_refresh

from .schemas import FOLLOW_TASK, CityDetail, CityPage, Problem, RefreshAccepted

router = Router(tags=["cities"])

MAX_PAGE_SIZE = 200
DEFAULT_PAGE_SIZE = 50
CityId = Path(..., ge=1, le=MAX_ID, description="the city's id")


@router.get("/", response={200: CityPage, 400: Problem, 404: Problem}, operation_id="city_list",
            url_name="city_list")
def city_list(request: HttpRequest, page: StrictInt = Query(1, ge=1, le=MAX_ID),
              page_size: StrictInt = Query(DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE),
              q: str = Query("", max_length=1000, description="part of the city's name")) -> dict:
    """Cities with their latest reading, by name, a page at a time (?page=, ?page_size=, ?q=)."""
    paginator = Paginator(matching(search_term(q)).order_by("name", "pk"), page_size)
    try:
        found = page_with_latest(paginator, page)
    except EmptyPage:
        raise ProblemError(404, f"page {page} is past the last page ({paginator.num_pages})") from None
    return {
        "count": found.paginator.count,
        "page": found.number,
        "pages": found.paginator.num_pages,
        "results": [
            {"id": city.pk, "name": city.name, "country_code": city.country_code,
             "latitude": city.latitude, "longitude": city.longitude,
             "latest": None if city.observed_at is None else {name: getattr(city, name) for name in LATEST_FIELDS}}
            for city in found.object_list
        ],
    }


@router.get("/{city_id}", response={200: CityDetail, 400: Problem, 404: Problem}, operation_id="city_detail",
            url_name="city_detail")
def city_detail(request: HttpRequest, city_id: StrictInt = CityId) -> dict:
    """One city with its latest reading."""
    city = City.objects.filter(pk=city_id).first()
    if city is None:
        raise unknown_city(city_id)
    latest = WeatherData.objects.filter(city=city).order_by("-observed_at").first()
    return {"id": city.pk, "name": city.name, "country_code": city.country_code,
            "latitude": city.latitude, "longitude": city.longitude, "latest": latest}


@router.post("/{city_id}/refresh",
             response={202: RefreshAccepted, 400: Problem, 404: Problem, 429: Problem, 503: Problem},
             operation_id="city_refresh", url_name="city_refresh", openapi_extra=FOLLOW_TASK)
def city_refresh(request: HttpRequest, city_id: StrictInt = CityId) -> Status:
    """Queue a fetch of the city's current weather at API priority; 202 with the task to follow.

    Open to anonymous clients: a per-client rate limit, one fetch per city at a
    time (a second request joins it) and the provider quota guard it.
    """
    enqueued = request_refresh(request, city_id, Priority.API)
    return Status(202, accepted(enqueued, city_id=city_id))
