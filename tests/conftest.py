"""Fixtures: the simulator on loopback, real worker pools on RabbitMQ, the test database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connection

from tools.harness import Simulator, WorkerPools, purge_lanes, worker_env
from tools.simulator import SimulatorServer, start_in_thread
from weather import refresh


@pytest.fixture(scope="session")
def simulator_server() -> Iterator[SimulatorServer]:
    """One simulator for the session, on an ephemeral loopback port."""
    server = start_in_thread()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def sim(simulator_server: SimulatorServer, settings) -> Iterator[Simulator]:
    """The simulator, reset, and this process's provider client pointed at it."""
    settings.WEATHER_API_URL = simulator_server.url
    settings.WEATHER_READ_TIMEOUT = 1.5
    refresh.weather_service.cache_clear()
    handle = Simulator(simulator_server.url)
    handle.reset()
    yield handle
    handle.reset()
    refresh.weather_service.cache_clear()


# Slots per pool in tests: small, so a test can fill a pool on purpose.
POOL_SLOTS = {"interactive": 2, "bulk": 2, "maintenance": 1}


@pytest.fixture(scope="session")
def pools(django_db_setup, django_db_blocker, simulator_server, tmp_path_factory) -> Iterator[WorkerPools]:
    """The three pools as real processes through the launcher, on the test database."""
    with django_db_blocker.unblock():
        database_name = connection.settings_dict["NAME"]
    purge_lanes()
    manager = WorkerPools(worker_env(database_name, simulator_server.url), tmp_path_factory.mktemp("workers"),
                          slots=POOL_SLOTS)
    try:
        for pool in POOL_SLOTS:
            manager.start(pool)
        yield manager
    finally:
        manager.stop_all()


@pytest.fixture
def live(pools: WorkerPools, sim: Simulator, transactional_db) -> WorkerPools:
    """Everything a test with real workers needs: pools, a reset simulator, committed data."""
    return pools
