"""A steady stream of HTTP requests under faults, each one's send and answer time kept for the checks after."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Answer:
    """One request: when it was sent and answered (monotonic seconds), its status and its JSON body."""

    sent: float
    answered: float
    status: int
    body: dict
    retry_after: str | None = None

    def under_way(self, start: float, end: float) -> bool:
        """Whether the request was in flight at some moment between start and end."""
        return self.sent <= end and self.answered >= start


def post(url: str, headers: dict[str, str], timeout: float = 15) -> tuple[int, dict, str | None]:
    """POST with an empty body: the status, the JSON answer (errors included) and any Retry-After.

    A connection refused or cut, or no answer within `timeout`, is status 0: the client saw no answer.
    """
    request = urllib.request.Request(url, data=b"", method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.load(response), response.headers.get("Retry-After")
    except urllib.error.HTTPError as error:
        raw = error.read()
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {"raw": raw[:200].decode(errors="replace")}
        return error.code, body, error.headers.get("Retry-After")
    except (OSError, ValueError) as error:
        return 0, {"error": str(error)}, None


class Poster(threading.Thread):
    """POSTs each URL in turn, one answer before the next, until the URLs run out or it is stopped."""

    def __init__(self, urls: Iterable[str], headers: dict[str, str] | None = None, every_s: float = 0.0) -> None:
        super().__init__(daemon=True)
        self.urls, self.headers, self.every_s = iter(urls), headers or {}, every_s
        self.stop = threading.Event()
        self.answers: list[Answer] = []

    def run(self) -> None:
        for url in self.urls:
            if self.stop.is_set():
                return
            sent = time.monotonic()
            status, body, retry_after = post(url, self.headers)
            self.answers.append(Answer(sent, time.monotonic(), status, body, retry_after))
            # Paced by an event, so stopping never waits out the pause.
            if self.stop.wait(self.every_s):
                return

    def sent_after(self, moment: float) -> int:
        """How many requests were sent after this moment."""
        return sum(answer.sent > moment for answer in self.answers)

    def finish(self, timeout: float = 30) -> list[Answer]:
        """Stop after the request in flight; every answer."""
        self.stop.set()
        self.join(timeout)
        return list(self.answers)
