"""Who may start protected operations: a staff session or an active API key, each counted against its limit."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja.security import APIKeyHeader, SessionAuthIsStaff

from weather.apikeys import active_key
from weather.http import ProblemError
from weather.models import ApiKey
from weather.ratelimit import hit


class ApiKeyAuth(APIKeyHeader):
    """`X-API-Key: <key>`: an active key, within its own rate limit (429 past it)."""

    param_name = "X-API-Key"

    def authenticate(self, request: HttpRequest, key: str | None) -> ApiKey | None:
        """The key's row, or None so the next method (or a 401) decides."""
        row = active_key(key) if key else None
        if row is None:
            return None
        wait = hit(f"apikey:{row.pk}", row.rate_limit_per_minute)
        if wait is not None:
            raise ProblemError(429, f"API key {row.prefix}... is over its {row.rate_limit_per_minute} "
                                    "requests a minute", retry_after=wait)
        return row


class StaffSession(SessionAuthIsStaff):
    """A signed-in staff member; the request is CSRF-checked, as every cookie-authenticated POST is."""

    def __call__(self, request: HttpRequest) -> Any:
        # No staff session, nothing a forged request could borrow: say 401, not "CSRF failed".
        user = getattr(request, "user", None)
        if user is None or not (user.is_authenticated and user.is_staff):
            return None
        return super().__call__(request)


# Protected operations accept either; a request with neither is answered 401.
STAFF_OR_KEY = [ApiKeyAuth(), StaffSession()]
