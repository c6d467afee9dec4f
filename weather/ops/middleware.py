"""Probes first: liveness, readiness and metrics answer before host validation and the HTTPS redirect."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from .health import healthz, readyz
from .metrics import metrics_view

# Orchestrator probes and Prometheus scrapers call these inside the cluster, over
# plain HTTP, with whatever Host they dialled (a pod IP, `web:8000`): they must get
# the real answer, not a redirect to HTTPS or a 400 for an unlisted host. Only
# these paths, and only for reads; /metrics keeps its bearer token when one is set.
PROBES: dict[str, Callable[[HttpRequest], HttpResponse]] = {
    "/healthz": healthz,
    "/readyz": readyz,
    "/metrics": metrics_view,
}


class ProbeMiddleware:
    """Answer GET/HEAD of the probe paths directly, ahead of SecurityMiddleware and host checks."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        probe = PROBES.get(request.path_info)
        if probe is None or request.method not in ("GET", "HEAD"):
            return self.get_response(request)
        return probe(request)  # a HEAD's body is dropped by HeadWithoutBodyMiddleware, outside this one
