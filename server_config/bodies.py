"""Request bodies read whole by the event loop, within a deadline and a size, before any app thread is taken.

Django reads a body on the thread that runs the request (the CSRF check of a POST
does), so a client that trickles its body holds that thread: twelve such clients
held every thread of a web process and its health checks timed out. Here the event
loop reads the body (a slow one costs a buffer, not a thread), answers 408 when it
has not arrived within WEB_BODY_TIMEOUT_MS and 413 past WEB_MAX_BODY_BYTES, and only
then hands the request to the app with its body complete. This is what the nginx
edge does in compose and Kubernetes, done again by the web role itself for run modes
without an edge (scripts/run, a Procfile PaaS whose router streams bodies).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

access_log = logging.getLogger("f_brain.access")


def declared_length(scope: Scope) -> int | None:
    """The request's Content-Length, or None when absent or not a number (then the bytes read are counted)."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class WholeBodies:
    """ASGI middleware: the app sees a request only once its whole body is in, or the client gets 408 or 413."""

    def __init__(self, app: ASGIApp, timeout_s: float, max_bytes: int) -> None:
        self.app, self.timeout_s, self.max_bytes = app, timeout_s, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if (declared_length(scope) or 0) > self.max_bytes:
            await self.refuse(scope, send, 413, f"request body over {self.max_bytes} bytes")
            return
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.timeout_s):
                more = True
                while more:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return  # the client left: nobody to answer
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_bytes:
                        await self.refuse(scope, send, 413, f"request body over {self.max_bytes} bytes")
                        return
                    chunks.append(chunk)
                    more = message.get("more_body", False)
        except TimeoutError:
            await self.refuse(scope, send, 408, f"request body not received within {self.timeout_s:g} s")
            return
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: the client's disconnect, whenever it comes
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def refuse(self, scope: Scope, send: Send, status: int, reason: str) -> None:
        """Answer without the app, close the connection (its unread bytes cannot be reused), log one access line."""
        payload = json.dumps({"detail": reason}).encode()
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
            (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": payload})
        path = scope.get("path", "")[:200]
        access_log.warning("%s %s %s (%s)", scope.get("method"), path, status, reason,
                           extra={"method": scope.get("method"), "path": path, "status": status})
