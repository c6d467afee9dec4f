"""The service fence: a test not marked `integration` that reaches a service or starts a process fails.

The fast loop (`scripts/test --fast`, `-m "not integration"`) must run on a machine with
no RabbitMQ, PostgreSQL, Docker, browser or namespaces; a test that silently needs one
would fail there, or worse pass here for the wrong reason. So, for every test without
the `integration` marker:

* a TCP connection is refused unless it goes to a port this test process itself listens
  on (the in-process simulator, a server thread);
* starting a process is refused unless the test is marked `subprocess` (a short-lived
  local program that needs no service: a fresh interpreter);
* database access is refused by pytest-django already. A test that asks for the database
  (its `django_db` marker, or a fixture built on the test database) is marked `integration`
  at collection, derived from what it declares: the marker cannot be forgotten there.

PostgreSQL's client library opens its sockets in C, out of this fence's sight: the
collection rule is what keeps the database out of the fast loop.
"""

from __future__ import annotations

import socket
import subprocess
import threading
from typing import Any

import pytest

INTEGRATION = "integration"
SUBPROCESS = "subprocess"
# pytest-django builds every database fixture (db, transactional_db, live_server, our pools) on this one.
DATABASE_FIXTURE = "django_db_setup"


class _Fence:
    """What the running test may do, and what it tried that it may not."""

    def __init__(self) -> None:
        self.active = False
        self.processes_allowed = False
        self.test_id = ""
        self.violations: list[str] = []
        self.own_ports: set[int] = set()
        # Threads already running when the test began (an earlier integration test's servers and
        # clients) are not the test's doing.
        self.background: set[int] = set()

    def watching(self) -> bool:
        """Whether what the current thread does counts against the running test."""
        return self.active and threading.get_ident() not in self.background


FENCE = _Fence()
_bind = socket.socket.bind
_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex
_popen_init = subprocess.Popen.__init__


def _refuse(what: str, marker: str) -> None:
    message = f"{FENCE.test_id} {what} but is not marked `{marker}` (tests/fence.py)"
    FENCE.violations.append(message)
    # Failed is a BaseException: code that catches a broker's or a client's errors cannot swallow it.
    pytest.fail(message, pytrace=False)


def _check_address(sock: socket.socket, address: Any) -> None:
    if not FENCE.watching():
        return
    if sock.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
        if address[1] in FENCE.own_ports:
            return
        _refuse(f"connects to {address[0]}:{address[1]}", INTEGRATION)
    elif sock.family == socket.AF_UNIX:
        _refuse(f"connects to the socket {address!r}", INTEGRATION)


def _fenced_bind(self: socket.socket, address: Any) -> None:
    _bind(self, address)
    if self.family in (socket.AF_INET, socket.AF_INET6):
        FENCE.own_ports.add(self.getsockname()[1])


def _fenced_connect(self: socket.socket, address: Any) -> None:
    _check_address(self, address)
    return _connect(self, address)


def _fenced_connect_ex(self: socket.socket, address: Any) -> int:
    _check_address(self, address)
    return _connect_ex(self, address)


def _fenced_popen_init(self: subprocess.Popen, args: Any, *rest: Any, **kwargs: Any) -> None:
    if FENCE.watching() and not FENCE.processes_allowed:
        _refuse(f"starts a process ({args if isinstance(args, str) else ' '.join(map(str, args))[:80]})",
                f"{SUBPROCESS}` or `{INTEGRATION}")
    _popen_init(self, args, *rest, **kwargs)


def install() -> None:
    """Put the fence around sockets and processes for the whole session (inactive until a test runs)."""
    socket.socket.bind = _fenced_bind
    socket.socket.connect = _fenced_connect
    socket.socket.connect_ex = _fenced_connect_ex
    subprocess.Popen.__init__ = _fenced_popen_init


def needs_database(item: pytest.Item) -> bool:
    """Whether the test asks for the test database."""
    return item.get_closest_marker("django_db") is not None or DATABASE_FIXTURE in getattr(item, "fixturenames", ())


def mark_database_tests(items: list[pytest.Item]) -> None:
    """Mark `integration` every test that uses the database."""
    for item in items:
        if needs_database(item) and not item.get_closest_marker(INTEGRATION):
            item.add_marker(INTEGRATION)


def enter(item: pytest.Item) -> None:
    """Fence the test in, unless it is marked `integration`."""
    FENCE.active = item.get_closest_marker(INTEGRATION) is None
    FENCE.processes_allowed = item.get_closest_marker(SUBPROCESS) is not None
    FENCE.test_id = item.nodeid
    FENCE.background = {thread.ident for thread in threading.enumerate()} - {threading.get_ident()}
    FENCE.violations = []


def leave() -> list[str]:
    """Lift the fence; what the test tried that it may not (even if its code caught the failure)."""
    FENCE.active = False
    violations, FENCE.violations = FENCE.violations, []
    return violations
