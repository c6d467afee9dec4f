"""A refresh asked for over HTTP, the one flow of the API and the dashboard: the city exists, the client is within
its limit, and the fetch is enqueued; each refusal is the ProblemError the surface answers with."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest

from routing import Priority
from routing.broker import BrokerUnavailableError

from .dispatch import Enqueued, enqueue_city_fetch
from .http import ProblemError, client_key, queue_unavailable, unknown_city
from .models import City
from .ratelimit import hit
from .refresh import UnknownCityError


def request_refresh(request: HttpRequest, city_id: int, priority: Priority) -> Enqueued:
    """Check the city and the client's rate limit, then enqueue the city's fetch at `priority`."""
    if not City.objects.filter(pk=city_id).exists():
        raise unknown_city(city_id)
    wait = hit(client_key(request), settings.REFRESH_RATE_LIMIT_PER_MINUTE, settings.REFRESH_RATE_WINDOW_SECONDS)
    if wait is not None:
        raise ProblemError(429, "too many refresh requests; slow down", retry_after=wait)
    try:
        return enqueue_city_fetch(city_id, priority)
    except UnknownCityError:
        raise unknown_city(city_id) from None
    except BrokerUnavailableError as error:
        raise queue_unavailable(error) from None
