"""Liveness and readiness: is this process up, and can it reach the database and the broker."""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_safe

from routing.broker import BrokerUnavailableError, broker_nodes, ensure_reachable, node_states, resource_alarm


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_broker() -> None:
    """Reachable, and accepting publishes: under a memory or disk alarm a refresh could not be queued."""
    ensure_reachable()
    if alarm := resource_alarm():
        raise BrokerUnavailableError(alarm)


@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up. ProbeMiddleware answers GET first; this route gives other methods their 405."""
    return JsonResponse({"status": "ok"})


@require_safe
def readyz(request: HttpRequest) -> JsonResponse:
    """Database reachable and broker accepting publishes: 200, else 503 naming what is not."""
    checks = {}
    for name, check in (("database", _check_database), ("broker", _check_broker)):
        try:
            check()
            checks[name] = "ok"
        except Exception as error:
            checks[name] = f"error: {type(error).__name__}: {str(error)[:200]}"
    ready = all(value == "ok" for value in checks.values())
    body = {"status": "ready" if ready else "not ready", "checks": checks}
    if len(broker_nodes()) > 1:
        # A cluster: ready while a node takes work; each node's state said for the operator.
        body["broker_nodes"] = {node: "ok" if why is None else f"unreachable: {why}"
                                for node, why in node_states().items()}
    return JsonResponse(body, status=200 if ready else 503)
