"""Request hygiene for every surface: charsets that cannot garble, HEAD without a body, personal answers private."""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable, Iterable

from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_cache_control

API_PREFIX = "/api/"
# Charsets that decode an ASCII query string to itself. Query strings are
# percent-encoded UTF-8; Django decodes them with the body's declared charset,
# so UTF-16 would silently drop ?day= and a bytes codec (hex, zlib) would crash.
ASCII_COMPATIBLE = {"utf-8", "ascii", "latin-1", "iso8859-1", "cp1252"}


def acceptable_charset(charset: str) -> bool:
    """A charset that decodes an ASCII query string to itself (unknown names count: Django ignores them)."""
    try:
        return codecs.lookup(charset).name in ASCII_COMPATIBLE
    except LookupError:
        return True
    except ValueError:  # a NUL in the name
        return False


def _declared_charset(content_type: str) -> str | None:
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"')
    return None


def _refusal(path: str, charset: str) -> tuple[int, str, bytes]:
    message = f"unsupported charset {charset[:40]!r}: send UTF-8"
    if path.startswith(API_PREFIX):
        return 415, "application/json", json.dumps({"error": message}).encode()
    return 415, "text/plain; charset=utf-8", message.encode()


class CharsetGuardApp:
    """WSGI wrapper: Django's request constructor decodes the query string with the declared
    charset and raises on a bytes codec (hex, zlib) or a NUL in it, before any middleware runs."""

    def __init__(self, app: Callable) -> None:
        self.app = app

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        charset = _declared_charset(environ.get("CONTENT_TYPE", ""))
        if charset is not None and not acceptable_charset(charset):
            status, content_type, body = _refusal(environ.get("PATH_INFO", ""), charset)
            start_response(f"{status} Unsupported Media Type",
                           [("Content-Type", content_type), ("Content-Length", str(len(body)))])
            return [body]
        return self.app(environ, start_response)


class CharsetGuardMiddleware:
    """Refuse, with 415, a request whose declared charset would garble its query string (UTF-16):
    Django decodes ?day= with it and the parameter silently vanishes."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        charset = request.encoding
        if charset and not acceptable_charset(charset):
            status, content_type, body = _refusal(request.path, charset)
            return HttpResponse(body, status=status, content_type=content_type)
        return self.get_response(request)


class HeadWithoutBodyMiddleware:
    """A HEAD answer is the GET's status and headers without its body (RFC 9110, 9.3.2), on every route.

    Django's development server drops the body itself; a production server may send
    whatever the view wrote. Content-Length keeps the GET's length, as the RFC allows.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method != "HEAD":
            return self.get_response(request)
        # Every GET resource answers HEAD: the API's routes (django-ninja) know only GET.
        request.method = "GET"
        try:
            response = self.get_response(request)
        finally:
            request.method = "HEAD"
        if response.streaming:
            # WhiteNoise's static files (and any stream): close the file without reading it.
            response.close()
            response.streaming_content = []
        else:
            response["Content-Length"] = str(len(response.content))
            response.content = b""
        return response


class PrivateWhenPersonalMiddleware:
    """A response that sets a cookie (a CSRF token's, a session's) is for one client: `Cache-Control: private`.

    A page with a form carries a CSRF token in its HTML; a shared cache that kept it would
    hand one visitor's token to the next. Outside the session and CSRF middleware, so it
    sees the cookies they set.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.cookies:
            patch_cache_control(response, private=True)
        return response
