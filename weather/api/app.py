"""The NinjaAPI: routers, the one error shape for every 4xx and 5xx, and the OpenAPI document."""

from __future__ import annotations

import logging
from datetime import date, datetime

from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.renderers import JSONRenderer
from ninja.responses import NinjaJSONEncoder

from weather.http import ProblemError, database_unavailable

from . import cities, etl, tasks

log = logging.getLogger(__name__)

class IsoJsonEncoder(NinjaJSONEncoder):
    """Times as `datetime.isoformat()` (microseconds, +00:00), as the API has always written them."""

    def default(self, o: object) -> object:
        """Datetimes and dates in ISO 8601 at full precision; the rest as ninja encodes them."""
        if isinstance(o, datetime | date):
            return o.isoformat()
        return super().default(o)


class IsoJsonRenderer(JSONRenderer):
    """Ninja's JSON renderer with IsoJsonEncoder."""

    encoder_class = IsoJsonEncoder


api = NinjaAPI(
    title="F_BRAIN weather API",
    version="1",
    description="Cities and their readings; refreshes and the daily summary run as tasks you follow by id.",
    urls_namespace="api",
    renderer=IsoJsonRenderer(),
)
api.add_router("/cities/", cities.router)
api.add_router("/tasks/", tasks.router)
api.add_router("/etl/", etl.router)


def _problem(request: HttpRequest, problem: ProblemError) -> HttpResponse:
    response = api.create_response(request, problem.body(), status=problem.status)
    if problem.retry_after is not None:
        response["Retry-After"] = str(problem.retry_after)
    return response


@api.exception_handler(ProblemError)
def on_problem(request: HttpRequest, exc: ProblemError) -> HttpResponse:
    """A request the service refused for a reason it can name."""
    return _problem(request, exc)


def _describe_errors(errors: list[dict]) -> str:
    parts = []
    for error in errors[:5]:
        where = ".".join(str(part) for part in error.get("loc", ())[1:]) or "body"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts)


@api.exception_handler(ValidationError)
def on_invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    """A path that names nothing is a 404 (as an unknown id is); any other invalid input is a 400."""
    if any(error.get("loc", ("",))[0] == "path" for error in exc.errors):
        return _problem(request, ProblemError(404, f"nothing at {request.path[:200]}"))
    return _problem(request, ProblemError(400, f"invalid request: {_describe_errors(exc.errors)}"))


@api.exception_handler(AuthenticationError)
def on_unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    """No usable credentials: say which ones the operation takes."""
    return _problem(request, ProblemError(401, "sign in as staff or send an active API key in X-API-Key"))


@api.exception_handler(HttpError)
def on_http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    """Ninja's own refusals (CSRF, malformed input) in the one error shape."""
    return _problem(request, ProblemError(exc.status_code, exc.message))


@api.exception_handler(Http404)
def on_not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    """Nothing here."""
    return _problem(request, ProblemError(404, f"nothing at {request.path[:200]}"))


@api.exception_handler(OperationalError)
@api.exception_handler(InterfaceError)
def on_database_unavailable(request: HttpRequest, exc: Exception) -> HttpResponse:
    """The database refused or lost the connection (a restart, a failover): a passing fault, a 503 to retry."""
    log.warning("database unavailable in %s %s: %s", request.method, request.path[:200], exc)
    return _problem(request, database_unavailable())


@api.exception_handler(Exception)
def on_unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    """A bug: logged with its traceback, answered in the one shape without internals."""
    log.exception("unhandled error in %s %s", request.method, request.path[:200])
    return _problem(request, ProblemError(500, "internal error; it has been logged"))
