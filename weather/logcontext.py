"""Who a log line is about: the request id and the task (id, name, lane, retry), on every line of every process.

The web binds the request id for the duration of a request and passes it to the
tasks it enqueues in their headers; a worker binds the task's fields and that
request id while the task runs, so the access log line of a click and the
worker's lines of its fetch share one id.
"""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar
from typing import Any

from celery import signals

from routing.routes import lane_of_message

# What an incoming X-Request-ID may look like to be kept (a proxy's or a client's); anything else is replaced.
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
REQUEST_ID_HEADER = "f_brain_request_id"
FIELDS = ("request_id", "task_id", "task_name", "lane", "retries")

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
_task: ContextVar[dict | None] = ContextVar("task", default=None)


def request_id_from(header: str | None) -> str:
    """The caller's request id when it is a sane token, else a new one."""
    if header and REQUEST_ID_PATTERN.match(header):
        return header
    return uuid.uuid4().hex


def bind_request(request_id: str | None) -> None:
    """The request (or, in a worker, the originating request) this process works for now."""
    _request_id.set(request_id)


def current_request_id() -> str | None:
    """The request id bound in this context, if any."""
    return _request_id.get()


def bind_task(task_id: str | None, task_name: str, lane: str, retries: int) -> None:
    """The task this worker process runs now."""
    _task.set({"task_id": task_id, "task_name": task_name, "lane": lane, "retries": retries})


def clear_task() -> None:
    """The task ended: later lines are the worker's own."""
    _task.set(None)
    _request_id.set(None)


class ContextFilter(logging.Filter):
    """Adds request_id, task_id, task_name, lane and retries to every record (None where they do not apply)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Never drops a record; only annotates it."""
        task = _task.get() or {}
        values = {"request_id": _request_id.get(), **{field: task.get(field) for field in FIELDS[1:]}}
        for field, value in values.items():
            if getattr(record, field, None) is None:
                setattr(record, field, value)
        return True


# Control characters and Unicode line breaks, written as escapes: a client's path or header with an encoded
# newline would otherwise start a forged line of its own in a text log (JSON lines escape them already).
_CONTROLS = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F)} | {
    code: f"\\u{code:04x}" for code in (0x85, 0x2028, 0x2029)}


def escape_controls(text: str) -> str:
    """`text` with every control character and line break escaped (a newline becomes the two characters \\x0a)."""
    return text.translate(_CONTROLS)


class TextFormatter(logging.Formatter):
    """A plain line, with the context fields that are set appended as " [key=value ...]" (grep-able).

    The line itself holds no control character, whatever a client sent; only a traceback, which
    follows it, spans lines.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        """The line without its traceback, escaped."""
        return escape_controls(super().formatMessage(record))

    def format(self, record: logging.LogRecord) -> str:
        """The usual line, then the context."""
        line = super().format(record)
        shown = " ".join(f"{field}={value}" for field in FIELDS if (value := getattr(record, field, None)) is not None)
        return f"{line} [{escape_controls(shown)}]" if shown else line


@signals.before_task_publish.connect
def pass_request_id(headers: dict | None = None, **_: Any) -> None:
    """A task published while serving a request (or running a task that came from one) carries its request id."""
    request_id = _request_id.get()
    if headers is not None and request_id and REQUEST_ID_HEADER not in headers:
        headers[REQUEST_ID_HEADER] = request_id


@signals.task_prerun.connect
def bind_running_task(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    """Every line the task logs names it, its lane, its retry and the request it came from."""
    bind_task(task_id, task.name, lane_of_message(task.name, task.request.delivery_info), task.request.retries or 0)
    request_id = getattr(task.request, REQUEST_ID_HEADER, None)
    bind_request(request_id if isinstance(request_id, str) else None)


@signals.task_postrun.connect
def unbind_task(**_: Any) -> None:
    """The task ended."""
    clear_task()


class ShortSecurityLines(logging.Filter):
    """django.security.* records as one short line: a hostile Host header (8 KB) is not written out, nor a traceback.

    Django logs a disallowed host with the whole header, twice, and the exception's
    traceback: a client could make each of its requests cost several times its size
    in the log.
    """

    MAX_CHARS = 200

    def filter(self, record: logging.LogRecord) -> bool:
        """Truncate the message and drop the traceback of security records; leave the others alone."""
        if record.name.startswith("django.security."):
            message = record.getMessage()
            record.msg = message if len(message) <= self.MAX_CHARS else f"{message[:self.MAX_CHARS]}... (truncated)"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True
