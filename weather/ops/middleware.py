"""Probes first: liveness answers before host validation and the HTTPS redirect."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse


class LivenessMiddleware:
    """Answer GET /healthz before host validation and the HTTPS redirect.

    Liveness only means "this process serves requests": a container or platform
    probe over plain HTTP with whatever Host header must get a 200, or a healthy
    web process would be restarted for a redirect or an ALLOWED_HOSTS mismatch.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path == "/healthz" and request.method in ("GET", "HEAD"):
            return JsonResponse({"status": "ok"})
        return self.get_response(request)
