"""The service fence refuses what an unmarked test may not reach, and lets through what it may."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests import fence


@dataclass
class FakeItem:
    """A test item with just the markers the fence reads."""

    markers: set[str] = field(default_factory=set)
    nodeid: str = "tests/test_example.py::test_example"
    fixturenames: tuple[str, ...] = ()

    def get_closest_marker(self, name: str) -> object | None:
        return name if name in self.markers else None

    def add_marker(self, name: str) -> None:
        self.markers.add(name)


@pytest.fixture
def fenced_as(request: pytest.FixtureRequest) -> Iterator:
    """Fence as another test would be fenced, then put this test's own fence back."""
    yield fence.enter
    fence.leave()
    fence.enter(request.node)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unmarked_test_cannot_reach_a_service_even_when_its_code_catches_the_refusal(fenced_as) -> None:
    fenced_as(FakeItem())
    port = closed_port()
    fence.FENCE.own_ports.discard(port)
    with pytest.raises(pytest.fail.Exception, match=f"connects to 127.0.0.1:{port} but is not marked `integration`"):
        socket.create_connection(("127.0.0.1", port), timeout=1)
    assert fence.leave() == [f"tests/test_example.py::test_example connects to 127.0.0.1:{port} but is not marked "
                             "`integration` (tests/fence.py)"]


def test_an_unmarked_test_may_reach_a_server_of_its_own_process(fenced_as) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        fenced_as(FakeItem())
        with socket.create_connection(server.getsockname(), timeout=1):
            pass
    assert fence.leave() == []


def test_a_process_needs_the_subprocess_or_integration_marker(fenced_as) -> None:
    fenced_as(FakeItem())
    with pytest.raises(pytest.fail.Exception, match=r"starts a process .* not marked `subprocess` or `integration`"):
        subprocess.run([sys.executable, "-c", "pass"], check=True)
    fenced_as(FakeItem({"subprocess"}))
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    fenced_as(FakeItem({"integration"}))
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    assert fence.leave() == []


def test_a_database_test_is_marked_integration_from_what_it_declares() -> None:
    by_marker, plain = FakeItem({"django_db"}), FakeItem()
    by_fixture = FakeItem(fixturenames=("live", "django_db_setup"))
    fence.mark_database_tests([by_marker, by_fixture, plain])
    assert "integration" in by_marker.markers
    assert "integration" in by_fixture.markers
    assert "integration" not in plain.markers
