"""What each adapter relies on inside its library, pinned to the release it was checked against (weather/adapters/).

A failure here after an upgrade names the private call to re-read; move CHECKED_AGAINST once
it still holds.
"""

from __future__ import annotations

import inspect
import json
import os
import socket
import subprocess
import sys
from importlib.metadata import version

import django
import pytest
from celery.beat import Scheduler
from django.db.models import QuerySet
from django_celery_beat.schedulers import DatabaseScheduler
from django_celery_results.backends.database import DatabaseBackend

from weather.adapters import celery_beat, celery_results, django_orm, prometheus


def test_each_pin_is_the_release_that_runs() -> None:
    assert django.get_version() == django_orm.CHECKED_AGAINST
    assert version("django-celery-results") == celery_results.CHECKED_AGAINST
    assert {name: version(name) for name in celery_beat.CHECKED_AGAINST} == celery_beat.CHECKED_AGAINST
    assert version("prometheus_client") == prometheus.CHECKED_AGAINST


def test_django_s_insert_takes_the_conflict_arguments_bulk_create_passes() -> None:
    # The statement itself (one round trip, idempotent) is held by tests/weather/test_round_trips.py.
    parameters = inspect.signature(QuerySet._insert).parameters
    assert {"objs", "fields", "on_conflict", "update_fields", "unique_fields"} <= set(parameters)
    assert "self._insert(" in inspect.getsource(QuerySet._batched_insert)


def test_the_results_backend_stores_through_the_hook_and_helpers_the_adapter_overrides() -> None:
    assert list(inspect.signature(DatabaseBackend._store_result).parameters)[:6] == [
        "self", "task_id", "result", "status", "traceback", "request"]
    for helper in ("encode_content", "_get_meta_from_request", "current_task_children", "_get_extended_properties"):
        assert callable(getattr(DatabaseBackend, helper)), helper
    # Celery's write of a state goes through the hook the adapter replaces, its values passed by position
    # (task id, result, state, traceback), whatever the subclass names them.
    assert "self._store_result,\n            task_id, result, state, traceback," in inspect.getsource(
        DatabaseBackend.store_result)


def test_the_scheduler_rereads_on_the_flags_the_adapter_sets() -> None:
    assert "self._heap" in inspect.getsource(Scheduler.tick)
    assert "_initial_read" in inspect.getsource(DatabaseScheduler.schedule.fget)


@pytest.mark.subprocess
def test_metric_files_are_named_by_the_identifier_given(tmp_path) -> None:
    probe = (
        "import json, os, sys\n"
        "from weather.adapters.prometheus import identify_processes_by\n"
        "identify_processes_by(lambda: 'host-a-7')\n"
        "from prometheus_client import Counter\n"
        "Counter('f_brain_probe', 'a probe').inc()\n"
        "print(json.dumps(sorted(os.listdir(os.environ['PROMETHEUS_MULTIPROC_DIR']))))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True,
                          env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert json.loads(done.stdout) == ["counter_host-a-7.db"]
    assert socket.gethostname()  # the project's identifier is host-pid (weather/instrumentation.py)
