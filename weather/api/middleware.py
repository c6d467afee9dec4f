"""JSON for /api/ clients even where Django answers before the API does (no route, wrong method, bad Host)."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from weather.middleware import API_PREFIX


class JsonApiErrorsMiddleware:
    """Give /api/ clients a JSON body for Django's own 4xx pages (no route, wrong method, bad Host...)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (not request.path.startswith(API_PREFIX) or not 400 <= response.status_code < 500
                or response.get("Content-Type", "").startswith("application/json")):
            return response
        if response.status_code == 404:
            message = f"no such endpoint: {request.path[:200]}"
        elif response.status_code == 405:
            message = f"method {request.method[:20]} not allowed; use {response.get('Allow', '')}"
        else:
            message = response.reason_phrase.lower()
        converted = JsonResponse({"error": message}, status=response.status_code)
        if "Allow" in response:
            converted["Allow"] = response["Allow"]
        return converted
