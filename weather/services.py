"""The Open-Meteo provider client: requests, typed errors and validated readings."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

import requests
from django.conf import settings

from .provider import MAX_LOCATIONS_PER_REQUEST

log = logging.getLogger(__name__)

# A provider asking for a longer pause than this is answering nonsense.
MAX_RETRY_AFTER_S = 3600.0
CURRENT_FIELDS = ("temperature_2m", "relative_humidity_2m", "surface_pressure")

# Physical plausibility: outside these a value is a provider bug, not weather.
TEMPERATURE_RANGE_C = (-95.0, 65.0)
HUMIDITY_RANGE_PCT = (0.0, 100.0)
PRESSURE_RANGE_HPA = (300.0, 1100.0)


class ProviderError(Exception):
    """The provider could not give a usable answer.

    Its message is the project's own (what kind of failure, which status): it
    reaches anyone holding the task id. What the provider said is logged by the
    worker, never put in the message.
    """


class TransientProviderError(ProviderError):
    """Worth retrying: timeout, connection error, 5xx, 429, or a body cut short or garbled."""

    def __init__(self, message: str, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class PermanentProviderError(ProviderError):
    """Retrying cannot help: a refused request or a body we cannot trust."""


class InvalidReadingError(PermanentProviderError):
    """One location's values are missing or physically impossible."""


@dataclass(frozen=True)
class Location:
    """Coordinates to ask the provider about."""

    latitude: float
    longitude: float


@dataclass(frozen=True)
class Reading:
    """Current conditions at one location, validated."""

    temperature: float
    humidity: float
    pressure: float
    observed_at: datetime


# What decoding an untrusted body can raise: bad JSON or charset (ValueError,
# UnicodeError), an unknown charset (LookupError), absurd nesting (RecursionError).
UNDECODABLE = (ValueError, LookupError, RecursionError)


def _retry_after(response: requests.Response) -> float | None:
    """The Retry-After hint in seconds, if it is a sane number (HTTP dates are ignored)."""
    try:
        value = float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None
    if not math.isfinite(value):
        return None
    return min(max(0.0, value), MAX_RETRY_AFTER_S)


def _text(response: requests.Response, limit: int = 200) -> str:
    """The start of the body as text, whatever charset the provider claims."""
    try:
        return response.text[:limit]
    except UNDECODABLE:
        return response.content[:limit].decode("utf-8", "replace")


def _reason(response: requests.Response) -> str:
    try:
        body = response.json()
    except UNDECODABLE:
        return _text(response)
    if isinstance(body, dict) and body.get("reason"):
        return str(body["reason"])[:200]
    return _text(response)


def _said(message: str, upstream: str) -> str:
    """Log what the provider said beside our message, and return our message alone for the error."""
    log.warning("%s; the provider said: %r", message, upstream[:300])
    return message


def _number(current: dict, key: str, bounds: tuple[float, float]) -> float:
    value = current.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidReadingError(_said(f"{key} is missing or not a number", repr(value)))
    try:
        value = float(value)
    except OverflowError:
        raise InvalidReadingError(f"{key} is too large to be a measurement") from None
    if not math.isfinite(value):
        raise InvalidReadingError(_said(f"{key} is not a finite number", repr(value)))
    low, high = bounds
    if not low <= value <= high:
        raise InvalidReadingError(_said(f"{key} is outside the physical range {low}..{high}", repr(value)))
    return float(value)


def parse_location(item: Any) -> Reading:
    """One location object of an Open-Meteo answer, as a validated reading."""
    if not isinstance(item, dict) or not isinstance(item.get("current"), dict):
        raise InvalidReadingError("location has no 'current' object")
    current = item["current"]
    raw_time = current.get("time")
    if not isinstance(raw_time, str):
        raise InvalidReadingError(_said("current.time is missing", repr(raw_time)))
    try:
        local = datetime.fromisoformat(raw_time)
    except ValueError:
        raise InvalidReadingError(_said("current.time is not ISO 8601", raw_time)) from None
    offset = item.get("utc_offset_seconds", 0)
    if isinstance(offset, bool) or not isinstance(offset, int) or abs(offset) > 18 * 3600:
        raise InvalidReadingError(_said("utc_offset_seconds is invalid", repr(offset)))
    if local.tzinfo is None:
        local = local.replace(tzinfo=dt_timezone(timedelta(seconds=offset)))
    try:
        observed_at = local.astimezone(UTC)
    except OverflowError:
        raise InvalidReadingError(_said("current.time is outside the calendar in UTC", raw_time)) from None
    return Reading(
        temperature=_number(current, "temperature_2m", TEMPERATURE_RANGE_C),
        humidity=_number(current, "relative_humidity_2m", HUMIDITY_RANGE_PCT),
        pressure=_number(current, "surface_pressure", PRESSURE_RANGE_HPA),
        observed_at=observed_at,
    )


class WeatherService:
    """Client of an Open-Meteo-compatible forecast endpoint over one HTTP session."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        session: requests.Session | None = None,
        timeout: tuple[float, float] | None = None,
        batch_size: int | None = None,
    ) -> None:
        self.base_url = base_url or settings.WEATHER_API_URL
        self.session = session or requests.Session()
        self.timeout = timeout or (settings.WEATHER_CONNECT_TIMEOUT, settings.WEATHER_READ_TIMEOUT)
        self.batch_size = min(batch_size or settings.WEATHER_BATCH_SIZE, MAX_LOCATIONS_PER_REQUEST)

    def get_current(self, location: Location) -> Reading:
        """Current conditions at one location; raises a ProviderError subclass."""
        result = self.get_current_many([location])[0]
        if isinstance(result, InvalidReadingError):
            raise result
        return result

    def get_current_many(self, locations: Sequence[Location]) -> list[Reading | InvalidReadingError]:
        """Current conditions for up to `batch_size` locations in one request, in order.

        A location with bad values comes back as an InvalidReadingError in its slot,
        so it does not sink the others; a failure of the whole request raises.
        """
        if not locations:
            return []
        if len(locations) > self.batch_size:
            raise ValueError(f"{len(locations)} locations exceed the batch size {self.batch_size}")
        body = self._request(locations)
        items = body if isinstance(body, list) else [body]
        if len(items) != len(locations):
            raise PermanentProviderError(
                f"provider answered {len(items)} locations for {len(locations)} asked"
            )
        results: list[Reading | InvalidReadingError] = []
        for item in items:
            try:
                results.append(parse_location(item))
            except InvalidReadingError as error:
                results.append(error)
        return results

    def _request(self, locations: Sequence[Location]) -> Any:
        params = {
            "latitude": ",".join(f"{loc.latitude:.4f}" for loc in locations),
            "longitude": ",".join(f"{loc.longitude:.4f}" for loc in locations),
            "current": ",".join(CURRENT_FIELDS),
        }
        try:
            response = self.session.get(self.base_url, params=params, timeout=self.timeout)
        except requests.Timeout as error:
            raise TransientProviderError(_said("provider timed out", str(error))) from error
        except requests.ConnectionError as error:
            raise TransientProviderError(_said("provider unreachable", str(error))) from error
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError) as error:
            # The answer was cut off or garbled on the way: the same request is likely to succeed again.
            raise TransientProviderError(_said("provider body cut short", str(error))) from error
        except requests.RequestException as error:
            raise PermanentProviderError(_said("provider request could not be made", str(error))) from error
        status = response.status_code
        if status == 429:
            raise TransientProviderError(_said("provider rate limit (429)", _reason(response)),
                                         retry_after=_retry_after(response), status=429)
        if status >= 500:
            raise TransientProviderError(_said(f"provider error ({status})", _reason(response)),
                                         retry_after=_retry_after(response), status=status)
        if status != 200:
            raise PermanentProviderError(_said(f"provider refused the request ({status})", _reason(response)))
        try:
            body = response.json()
        except UNDECODABLE:
            # A body cut short or garbled on the way is a transport fault, like a 5xx:
            # the same request is likely to succeed again. Only a well-formed answer
            # that says something impossible is permanent.
            raise TransientProviderError(_said(f"provider body is not JSON ({status})", _text(response, 80)),
                                         status=status) from None
        if isinstance(body, dict) and body.get("error"):
            raise PermanentProviderError(_said(f"provider reported an error ({status})",
                                               str(body.get("reason", "unknown"))))
        if not isinstance(body, (dict, list)):
            raise PermanentProviderError(f"provider body has an unexpected shape: {type(body).__name__}")
        return body
