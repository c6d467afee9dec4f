"""The published OpenAPI document, fuzzed by schemathesis against the real application on PostgreSQL.

Every operation gets generated valid and invalid input: no 5xx, every status and
body as documented. A stateful run follows the 202's link from a refresh to its
task's status. Cities exist for half of the generated ids, so both the 404 and the
success paths are exercised; messages go out only when a transaction commits,
which these tests never do, so nothing reaches the broker.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance, status_code_conformance

from server_config.wsgi import application
from weather.api.cities import MAX_ID
from weather.apikeys import issue_key
from weather.models import City

schema = schemathesis.openapi.from_wsgi("/api/openapi.json", application)
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
    max_examples=25,
    deterministic=True,
    # Credentials are the test's to give (an API key below), not schemathesis' to invent.
    with_security_parameters=False,
)
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


def _ensure_city(case: Any) -> None:
    """Make the city an even generated id names, so success answers are checked too, not only 404s."""
    city_id = (case.path_parameters or {}).get("city_id")
    if isinstance(city_id, int) and 0 < city_id <= MAX_ID and city_id % 2 == 0:
        City.objects.get_or_create(pk=city_id, defaults={
            "name": f"Generated {city_id}", "country_code": "FR", "latitude": 45.0, "longitude": 5.0})


@pytest.fixture
def in_process(db) -> Iterator[None]:
    """Requests through the WSGI application keep the test's database connection.

    Django closes it when a request ends; its own test client switches that off,
    and so must a test that calls the application directly inside a transaction.
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def api_key(in_process: None) -> str:
    """An active key with room for every generated request."""
    _, key = issue_key("schemathesis", rate_limit_per_minute=100_000)
    return key


@schema.parametrize()
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow], deadline=None)
def test_every_operation_answers_as_documented(case: Any, api_key: str) -> None:
    _ensure_city(case)
    case.headers = {**(case.headers or {}), "X-API-Key": api_key}
    case.call_and_validate(checks=CHECKS)


Workflow = schema.as_state_machine()
FOLLOWED: list[tuple[str, int]] = []


class RefreshThenFollow(Workflow):
    """Calls operations in sequence, following the document's links (a refresh's task id into its status)."""

    def before_call(self, case: Any) -> None:
        """Give even city ids a city, so a refresh is accepted and its link has a task to follow."""
        super().before_call(case)
        _ensure_city(case)

    def after_call(self, response: Any, case: Any) -> None:
        """Remember each call, to check below that the link was walked."""
        super().after_call(response, case)
        FOLLOWED.append((case.operation.label, response.status_code))

    def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
        """The same checks as above, on every step."""
        case.validate_response(response, checks=CHECKS)


def test_a_refresh_links_to_its_task_status(in_process: None) -> None:
    FOLLOWED.clear()
    RefreshThenFollow.run(settings=settings(
        max_examples=30, stateful_step_count=4, deadline=None, derandomize=True, database=None,
        suppress_health_check=list(HealthCheck)))
    accepted = [status for label, status in FOLLOWED if label == "POST /api/cities/{city_id}/refresh"]
    statuses = [status for label, status in FOLLOWED if label == "GET /api/tasks/{task_id}"]
    assert 202 in accepted, FOLLOWED
    assert 200 in statuses, "the 202's link to the task's status was never followed"


def test_the_document_and_the_docs_page_are_published(db) -> None:
    document = Client().get("/api/openapi.json").json()
    operations = {op["operationId"] for path in document["paths"].values() for op in path.values()}
    assert {"city_list", "city_detail", "city_refresh", "task_status", "daily_summary_start",
            "ops_queues"} <= operations
    refresh = document["paths"]["/api/cities/{city_id}/refresh"]["post"]["responses"]
    assert refresh["202"]["links"]["TaskStatus"]["operationId"] == "task_status"
    # Every error answer has the one shape.
    for path in document["paths"].values():
        for operation in path.values():
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    assert response["content"]["application/json"]["schema"]["$ref"].endswith("/Problem")
    docs = Client().get("/api/docs")
    assert docs.status_code == 200
    # The package's own Swagger UI files, collected and served here: nothing from the internet.
    assert b"/static/ninja/swagger-ui" in docs.content
    assert b"cdn." not in docs.content
