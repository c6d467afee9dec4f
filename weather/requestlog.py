"""Every request gets an id (kept from X-Request-ID when sane) and one access line that carries it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from .logcontext import bind_request, request_id_from

REQUEST_ID_RESPONSE_HEADER = "X-Request-ID"
# Orchestrator probes and scrapes call these every few seconds: their lines are debug, not noise.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

access_log = logging.getLogger("f_brain.access")


class RequestContextMiddleware:
    """First in the chain: binds the request id for every log line and task of the request, logs the request once.

    The id reaches the tasks the request enqueues through their headers
    (weather/logcontext.py), so the access line of a click and the worker's lines
    of its fetch share it. It is also returned to the client, to quote in a report.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = request_id_from(request.headers.get(REQUEST_ID_RESPONSE_HEADER))
        bind_request(request_id)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            response[REQUEST_ID_RESPONSE_HEADER] = request_id
            level = logging.DEBUG if request.path_info in QUIET_PATHS and response.status_code < 400 else logging.INFO
            duration_ms = round((time.perf_counter() - started) * 1000, 1)
            # The path without its query string: a query may carry what does not belong in a log.
            access_log.log(level, "%s %s %s %.1fms", request.method, request.path_info[:200], response.status_code,
                           duration_ms, extra={"method": request.method, "path": request.path_info[:200],
                                               "status": response.status_code, "duration_ms": duration_ms})
            return response
        finally:
            bind_request(None)
