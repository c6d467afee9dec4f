"""Liveness, readiness and Prometheus metrics endpoints."""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.crypto import constant_time_compare
from django.views.decorators.http import require_safe
from kombu import Connection
from prometheus_client import CONTENT_TYPE_LATEST

from routing.broker import connect

from . import metrics


def _check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return "ok"


def _check_broker() -> str:
    with Connection(settings.CELERY_BROKER_URL, connect_timeout=settings.CELERY_BROKER_CONNECTION_TIMEOUT) as conn:
        connect(conn)
    return "ok"


@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up. LivenessMiddleware answers GET first; this route gives other methods their 405."""
    return JsonResponse({"status": "ok"})


@require_safe
def readyz(request: HttpRequest) -> JsonResponse:
    """Database and broker reachable: 200, else 503 naming what is not."""
    checks = {}
    for name, check in (("database", _check_database), ("broker", _check_broker)):
        try:
            checks[name] = check()
        except Exception as error:
            checks[name] = f"error: {type(error).__name__}: {str(error)[:200]}"
    ready = all(value == "ok" for value in checks.values())
    return JsonResponse({"status": "ready" if ready else "not ready", "checks": checks}, status=200 if ready else 503)


@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition: task counters and latencies from every process, queue depth from the broker."""
    token = settings.METRICS_TOKEN
    if token and not constant_time_compare(request.headers.get("Authorization", ""), f"Bearer {token}"):
        return JsonResponse({"error": "metrics need the bearer token"}, status=401)
    return HttpResponse(metrics.render(), content_type=CONTENT_TYPE_LATEST)
