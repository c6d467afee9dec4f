"""HTTP helpers shared by the API, the dashboard and the operator views: one error shape, client keys, strict ids."""

from __future__ import annotations

import contextlib
import ipaddress
from typing import Annotated

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from ninja import Schema
from pydantic import BeforeValidator

from routing.broker import BrokerBlockedError, BrokerUnavailableError

from .dispatch import Enqueued

# What a client is told to wait when the broker cannot take a message.
BROKER_RETRY_AFTER_S = 5
# ... and when the database cannot answer (restarting, failing over): about a restart's length.
DATABASE_RETRY_AFTER_S = 5


class Problem(Schema):
    """The one error body of every 4xx and 5xx answer, as the OpenAPI document describes it."""

    error: str
    retry_after: int | None = None


class ProblemError(Exception):
    """A request that cannot be served, with the status and message the client gets (and when to come back)."""

    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after

    def body(self) -> dict:
        """The one JSON error shape of every surface: {"error": message[, "retry_after": seconds]}."""
        return {"error": self.message} if self.retry_after is None else {
            "error": self.message, "retry_after": self.retry_after}


def error_response(status: int, message: str, retry_after: int | None = None) -> JsonResponse:
    """A JSON error answer in the one shape, with Retry-After when the client should come back."""
    problem = ProblemError(status, message, retry_after)
    response = JsonResponse(problem.body(), status=status)
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    return response


def problem_response(problem: ProblemError) -> JsonResponse:
    """The JSON answer for a ProblemError."""
    return error_response(problem.status, problem.message, problem.retry_after)


# The largest id a row can have (PostgreSQL bigint); past it nothing exists.
MAX_ID = 2**63 - 1


def ascii_digits(value: object) -> object:
    """Refuse a number written any way but ASCII digits (" 12", "+12", "1_2", "12.0", "١٢" all parse elsewhere)."""
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise ValueError("expected ASCII digits only")
    return value


# An integer path or query parameter of the API, parsed as strictly as the dashboard parses its own.
StrictInt = Annotated[int, BeforeValidator(ascii_digits)]


def positive_int(raw: str) -> int | None:
    """ASCII digits only, within a database id's range; None for anything else."""
    if not (raw.isascii() and raw.isdigit()) or len(raw) > len(str(MAX_ID)):
        return None
    value = int(raw)
    return value if 1 <= value <= MAX_ID else None


def search_term(raw: str) -> str:
    """A ?q= search, trimmed; NULs dropped (PostgreSQL text cannot hold them)."""
    return raw.replace("\x00", "").strip()[:100]


def client_address(request: HttpRequest) -> str:
    """The client's address: the peer's, or behind NUM_TRUSTED_PROXIES proxies the one they saw (also django-axes')."""
    address = request.META.get("REMOTE_ADDR", "unknown")
    proxies = settings.NUM_TRUSTED_PROXIES
    if proxies:
        # Each trusted proxy appends the address it saw; the one before them is the client.
        chain = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
        if len(chain) >= proxies:
            # Only a real address counts: anything else (a NUL, a name, garbage a client
            # slipped in) would be a key the client controls. Then the proxy's own address is.
            with contextlib.suppress(ValueError):
                address = str(ipaddress.ip_address(chain[-proxies]))
    return address[:100]


def login_client_address(request: HttpRequest) -> str | None:
    """client_address for django-axes, which stores it as an IP address: None where there is none to store."""
    address = client_address(request)
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


def client_key(request: HttpRequest) -> str:
    """The user when signed in, else the client address (behind NUM_TRUSTED_PROXIES proxies)."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return f"user:{user.pk}"
    return f"ip:{client_address(request)}"


def accepted(enqueued: Enqueued, **extra: object) -> dict:
    """The body of a 202: the task's id, where to follow it, and whether it joined one already queued."""
    return {"task_id": enqueued.task_id, "status_url": reverse("api:task_status", args=[enqueued.task_id]),
            "deduplicated": enqueued.deduplicated, **extra}


def queue_unavailable(error: BrokerUnavailableError) -> ProblemError:
    """The 503 for a message the broker could not take; a block's reason is the client's to know, a fault's is not."""
    if isinstance(error, BrokerBlockedError):
        return ProblemError(503, f"the task queue cannot take work now: {error}; try again shortly",
                            retry_after=BROKER_RETRY_AFTER_S)
    return ProblemError(503, "the task queue is unavailable; try again shortly", retry_after=BROKER_RETRY_AFTER_S)


def database_unavailable() -> ProblemError:
    """The 503 for a request the database could not serve (its connection refused or lost): come back shortly."""
    return ProblemError(503, "the database is unavailable; try again shortly", retry_after=DATABASE_RETRY_AFTER_S)


def unknown_city(city_id: object) -> ProblemError:
    """The 404 for a city id that names no city."""
    return ProblemError(404, f"no city with id {str(city_id)[:32]!r}")
