"""load_cities: the shipped GeoNames dataset, filtered, loaded idempotently."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from weather.models import City

pytestmark = pytest.mark.django_db


def test_loading_twice_changes_nothing():
    out = StringIO()
    call_command("load_cities", "--limit", "50", stdout=out)
    assert "50 added" in out.getvalue()
    first = list(City.objects.order_by("pk").values_list("geonameid", "name", "latitude", "longitude", "population"))
    out = StringIO()
    call_command("load_cities", "--limit", "50", stdout=out)
    assert "0 added, 50 already present" in out.getvalue()
    assert list(City.objects.order_by("pk").values_list(
        "geonameid", "name", "latitude", "longitude", "population")) == first


def test_min_population_and_limit_select_the_most_populous():
    call_command("load_cities", "--min-population", "5000000", stdout=StringIO())
    populations = list(City.objects.values_list("population", flat=True))
    assert populations
    assert min(populations) >= 5_000_000
    assert City.objects.filter(name="Tokyo", country_code="JP").exists()
    for city in City.objects.all():
        city.full_clean()  # coordinates and fields from the dataset pass validation


def test_impossible_options_are_refused():
    with pytest.raises(CommandError, match="15000"):
        call_command("load_cities", "--min-population", "100", stdout=StringIO())
    with pytest.raises(CommandError, match="--limit"):
        call_command("load_cities", "--limit", "0", stdout=StringIO())
