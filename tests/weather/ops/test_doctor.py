"""`manage.py doctor` against the real topology: it passes when all is well and names each cause when not."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from tools.harness import ROOT, purge_lanes, wait_for
from tools.rabbit_alarm import memory_alarm
from weather.models import BeatHeartbeat, TaskAttempt
from weather.ops.doctor.checkup import forget_findings
from weather.ops.doctor.slowness import histogram_quantiles

pytestmark = pytest.mark.django_db(transaction=True)

LEASE_SECONDS = 2


def _doctor() -> tuple[list[dict], str | None]:
    """The findings as JSON, and the command's error when it exits 1."""
    out = StringIO()
    try:
        call_command("doctor", "--json", stdout=out)
        error = None
    except CommandError as failure:
        error = str(failure)
    return [json.loads(line) for line in out.getvalue().splitlines()], error


def _failed(findings: list[dict]) -> dict[str, str]:
    return {f["check"]: f["saw"] for f in findings if f["status"] == "fail"}


@pytest.fixture
def beat(live, settings, tmp_path):
    """A real beat process with a short lease, so a stopped one goes stale in seconds."""
    settings.BEAT_LEASE_SECONDS = LEASE_SECONDS
    env = {**live.env, "BEAT_LEASE_SECONDS": str(LEASE_SECONDS)}
    log = (tmp_path / "beat.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "workers", "beat"], cwd=ROOT, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: BeatHeartbeat.objects.filter(instance__endswith=f":{process.pid}", leading=True).exists(),
                 timeout=60, what="the beat to lead")
        yield process
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        log.close()


@pytest.mark.integration
def test_doctor_passes_on_a_healthy_topology_and_names_a_stopped_pool(beat, live):
    purge_lanes()
    TaskAttempt.objects.all().delete()  # crash rows earlier tests leave on purpose
    findings, error = _doctor()
    assert error is None, _failed(findings)
    checks = {f["check"]: f for f in findings}
    assert {"broker reachable", "broker alarm", "lane interactive", "pool bulk ping", "routes", "queue arguments",
            "beat alive", "beat leader", "timezones", "dead letters"} <= set(checks)
    assert str(beat.pid) in checks["beat leader"]["saw"]
    assert {f["symptom"] for f in findings} == {"tasks not executed", "tasks stuck or slow",
                                                 "periodic tasks not triggered"}
    # Its findings on the operator's page too (a run of its own, not one cached before the beat started).
    forget_findings()
    staff = User.objects.create_user("doctor-reader", is_staff=True)
    client = Client()
    client.force_login(staff)
    page = client.get("/ops/")
    assert b'id="doctor"' in page.content
    assert b"beat leader" in page.content

    live.stop("bulk")
    try:
        findings, error = _doctor()
    finally:
        live.start("bulk")
    failed = _failed(findings)
    assert error is not None
    assert "no consumer" in failed["lane bulk"]
    assert "pool bulk ping" in failed
    assert "lane interactive" not in failed


@pytest.mark.integration
def test_doctor_fails_when_beat_stops(beat):
    beat.send_signal(signal.SIGKILL)
    beat.wait(timeout=10)
    time.sleep(2 * LEASE_SECONDS + 1)
    findings, error = _doctor()
    assert "beat alive" in _failed(findings)
    assert "beat alive" in error


@pytest.mark.integration
def test_doctor_names_a_memory_alarm(live):
    # Run as an operator would, in a process of its own: a check that hung on the
    # blocked broker would time out here instead of holding the alarm up.
    with memory_alarm():
        result = subprocess.run([sys.executable, "manage.py", "doctor", "--json"], cwd=ROOT, env=live.env,
                                capture_output=True, text=True, timeout=60)
    findings = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode == 1, result.stderr[-2000:]
    failed = _failed(findings)
    assert "memory or disk alarm" in failed["broker alarm"]
    # A ping is a publish: under the alarm the pools are not pinged (it would hang), and that is said.
    assert {f["check"]: f["status"] for f in findings}["pool interactive ping"] == "warn"


def test_doctor_names_timezones_that_disagree(settings):
    settings.CELERY_TIMEZONE = "Europe/Paris"
    findings, error = _doctor()
    assert "CELERY_TIMEZONE=Europe/Paris" in _failed(findings)["timezones"]
    assert error is not None


def test_doctor_names_an_entry_whose_task_no_worker_registers():
    every, _ = IntervalSchedule.objects.get_or_create(every=60, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(name="typo", task="weather.tasks.refresh_everything", interval=every,
                                expire_seconds=30)
    findings, _ = _doctor()
    assert "weather.tasks.refresh_everything" in _failed(findings)["entry typo"]


def test_histogram_quantiles_read_cumulative_buckets():
    buckets = {0.1: 50.0, 0.5: 90.0, 1.0: 99.0, float("inf"): 100.0}
    assert histogram_quantiles(buckets, (0.5, 0.95, 0.99)) == [0.1, 1.0, 1.0]
    assert histogram_quantiles({}, (0.5,)) == [None]
