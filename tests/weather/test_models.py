"""Model constraints: coordinates in range, no duplicate place, one row per observation."""

from datetime import UTC, datetime

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from tests.factories import make_city
from weather.models import City, WeatherData

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("latitude", "longitude"), [(90.01, 0), (-90.5, 0), (0, 180.5), (0, -181)])
def test_out_of_range_coordinates_fail_validation_and_the_database(latitude, longitude):
    city = City(name="Nowhere", country_code="XX", latitude=latitude, longitude=longitude)
    with pytest.raises(ValidationError):
        city.full_clean()
    with pytest.raises(IntegrityError), transaction.atomic():
        city.save()


def test_same_place_twice_is_refused():
    make_city("Lyon", 45.75, 4.85)
    with pytest.raises(IntegrityError), transaction.atomic():
        make_city("Lyon", 45.75, 4.85)
    assert City.objects.filter(name="Lyon").count() == 1


def test_same_observation_twice_is_refused():
    city = make_city()
    observed = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    WeatherData.objects.create(city=city, temperature=1, humidity=50, pressure=1000, observed_at=observed)
    with pytest.raises(IntegrityError), transaction.atomic():
        WeatherData.objects.create(city=city, temperature=2, humidity=50, pressure=1000, observed_at=observed)


def test_active_filter():
    active = make_city()
    make_city(is_active=False)
    assert list(City.objects.active()) == [active]


@pytest.mark.django_db
def test_crash_counts_are_per_try_of_a_message():
    from weather.guard import record_end, record_start

    assert record_start("t-1", "task", "bulk", retries=0) == 1
    assert record_start("t-1", "task", "bulk", retries=0) == 2  # the same try started again: a crash
    assert record_start("t-1", "task", "bulk", retries=1) == 1  # a retry starts its own count
    assert record_start("t-1", "task", "bulk", retries=1) == 2
    record_end("t-1")
    assert record_start("t-1", "task", "bulk", retries=1) == 1
