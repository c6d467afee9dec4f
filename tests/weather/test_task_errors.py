"""A task's error reaches the client as the project's own exception, never a serializer wrapper."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from celery import current_app as app

from weather.quota import QuotaExceededError
from weather.refresh import UnknownCityError
from weather.services import InvalidReadingError, PermanentProviderError, TransientProviderError

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
RAISED = [
    QuotaExceededError("interactive quota exhausted", retry_at=NOW + timedelta(seconds=30), now=NOW),
    TransientProviderError("provider error 503: busy", retry_after=2.0, status=503),
    PermanentProviderError("provider refused the request (400): bad coordinates"),
    InvalidReadingError("temperature_2m=999.0 is outside the physical range -95.0..65.0"),
    UnknownCityError("city 42 does not exist"),
]


@pytest.mark.parametrize("error", RAISED, ids=lambda error: type(error).__name__)
def test_every_task_error_survives_the_json_result_backend(error: Exception) -> None:
    # What a worker stores and a client reads back, through the configured (JSON) backend.
    stored = app.backend.prepare_exception(error, serializer="json")
    read = app.backend.exception_to_python(stored)
    assert type(read) is type(error)
    assert str(read) == str(error)
