"""The dashboard: search, CSRF, cheap pages at any depth, sparklines."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from tests.factories import make_cities, make_city
from weather.charts import sparkline_points
from weather.models import WeatherData

pytestmark = pytest.mark.integration



@pytest.mark.django_db
def test_dashboard_searches_and_enforces_csrf():
    make_city("Paris", 48.85, 2.35)
    make_city("Lyon", 45.75, 4.85)
    page = Client().get("/?q=par")
    assert page.status_code == 200
    assert b"Paris" in page.content
    assert b"Lyon" not in page.content
    city_id = page.context["rows"][0]["city"].pk
    refused = Client(enforce_csrf_checks=True).post(f"/cities/{city_id}/refresh")
    assert refused.status_code == 403


@pytest.mark.django_db
def test_city_pages_show_each_latest_reading_in_a_fixed_number_of_queries(django_assert_max_num_queries):
    cities = make_cities(120)
    now = timezone.now()
    WeatherData.objects.bulk_create(
        WeatherData(city=city, temperature=hours, humidity=50, pressure=1000, observed_at=now - timedelta(hours=hours))
        for city in cities for hours in (1, 2, 3))
    newest = (now - timedelta(hours=1)).isoformat()
    # However deep the page: count, the page of cities, their latest readings (+ history, session).
    with django_assert_max_num_queries(4):
        dashboard = Client().get("/?page=5")
    assert len(dashboard.context["rows"]) == 20  # 120 cities, 25 a page
    with django_assert_max_num_queries(3):
        listing = Client().get("/api/cities/?page=3&page_size=50").json()
    assert (listing["count"], listing["pages"], len(listing["results"])) == (120, 3, 20)
    # Each city's own newest reading, not the newest of all or an older one.
    assert {(row["latest"]["temperature"], row["latest"]["observed_at"]) for row in listing["results"]} == {
        (1, newest)}
    assert {row["city"].temperature for row in dashboard.context["rows"]} == {1}


def test_sparkline_scales_history_into_the_box():
    from datetime import UTC, datetime, timedelta

    start = datetime(2026, 11, 24, tzinfo=UTC)
    points = sparkline_points([(start, 0.0), (start + timedelta(hours=1), 10.0), (start + timedelta(hours=2), 5.0)])
    assert points == "2.0,28.0 60.0,2.0 118.0,15.0"
    assert sparkline_points([(start, 1.0)]) == ""


@pytest.mark.django_db
@pytest.mark.parametrize("number", ["+3", " 3", "3 ", "\u0663", "\uff13", "3.0"])
def test_a_page_number_is_ascii_digits_only(number):
    # int() reads each of these as 3; like every id and page, the dashboard does not: page 1 is shown.
    make_cities(80)
    assert Client().get("/", {"page": "3"}).context["page"].number == 3
    assert Client().get("/", {"page": number}).context["page"].number == 1
    assert Client().get("/", {"page": "99"}).context["page"].number == 4, "past the end: the last page"
