"""Bad coordinates: a city off the globe fails validation, NaN included."""

from __future__ import annotations

import math

import pytest
from django.core.exceptions import ValidationError
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzzing import (
    BASE,
    DB,
    NO_SHRINK,
    outcome_of,
)
from weather.models import City

# --- 4. City coordinates ------------------------------------------------------------------------------------

OUT_OF_RANGE = {
    "latitude": st.one_of(st.floats(min_value=90, exclude_min=True), st.floats(max_value=-90, exclude_max=True),
                          st.sampled_from([math.nan, math.inf, -math.inf])),
    "longitude": st.one_of(st.floats(min_value=180, exclude_min=True), st.floats(max_value=-180, exclude_max=True),
                           st.sampled_from([math.nan, math.inf, -math.inf])),
}
IN_RANGE = {"latitude": st.floats(min_value=-90, max_value=90), "longitude": st.floats(min_value=-180, max_value=180)}


def _city(**coordinates: float) -> City:
    return City(name="Fuzzville", country_code="FR", **{"latitude": 1.0, "longitude": 1.0, **coordinates})


@pytest.mark.django_db
@settings(DB, max_examples=60)
@given(data=st.data(), field=st.sampled_from(["latitude", "longitude"]))
def test_a_city_outside_the_globe_fails_full_clean(data: st.DataObject, field: str) -> None:
    value = data.draw(OUT_OF_RANGE[field], label=field)
    with pytest.raises(ValidationError) as raised:
        _city(**{field: value}).full_clean()
    # Named by the field's validator, or (NaN, which compares false both ways) by the range constraint.
    messages = raised.value.message_dict
    assert field in messages or f"city_{field}_range" in " ".join(messages.get("__all__", [])), messages


@pytest.mark.django_db
@settings(DB, max_examples=60)
@given(latitude=IN_RANGE["latitude"], longitude=IN_RANGE["longitude"])
def test_a_city_on_the_globe_passes_full_clean(latitude: float, longitude: float) -> None:
    _city(latitude=latitude, longitude=longitude).full_clean()


@settings(BASE, max_examples=5, phases=NO_SHRINK)
@given(field=st.sampled_from(["latitude", "longitude"]))
def test_the_coordinate_validators_refuse_nan(field: str) -> None:
    # Without the database's constraint check, as on SQLite where NaN is stored as NULL and passes the CHECK.
    city = _city(**{field: math.nan})
    error = outcome_of(lambda: city.full_clean(validate_unique=False, validate_constraints=False), ValidationError)
    assert isinstance(error, ValidationError), f"{field}=nan passed the field validators"
    assert field in error.message_dict, error.message_dict
