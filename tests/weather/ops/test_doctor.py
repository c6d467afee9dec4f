"""`manage.py doctor` against the real topology: it passes when all is well and names each cause when not."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from io import StringIO

import pytest
from celery import current_app
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from routing import LANE_NAMES
from tests.factories import make_cities
from tools.harness import ROOT, purge_lanes, wait_for
from tools.rabbit_alarm import memory_alarm
from weather import effects
from weather.models import BeatHeartbeat, Effect, LaneSample, TaskAttempt
from weather.ops.doctor import ledger
from weather.ops.doctor.checkup import forget_findings
from weather.ops.doctor.findings import Context
from weather.ops.doctor.slowness import _recent_near_limit_runs
from weather.ops.status import lanes_status
from weather.sharedmetrics import histogram_quantiles
from weather.tasks import update_all_weather_data

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


def _start_beat(live, log_path, **env: str) -> subprocess.Popen:
    """A real beat process with a short lease (a stopped one goes stale in seconds), leading once it returns."""
    log = log_path.open("wb")
    process = subprocess.Popen([sys.executable, "-m", "workers", "beat"], cwd=ROOT, stdout=log,
                               stderr=subprocess.STDOUT,
                               env={**live.env, "BEAT_LEASE_SECONDS": str(LEASE_SECONDS), **env})
    log.close()
    wait_for(lambda: BeatHeartbeat.objects.filter(instance__endswith=f":{process.pid}", leading=True).exists(),
             timeout=60, what="the beat to lead")
    return process


@pytest.fixture
def beat(live, settings, tmp_path):
    """A real beat process, killed after the test."""
    settings.BEAT_LEASE_SECONDS = LEASE_SECONDS
    process = _start_beat(live, tmp_path / "beat.log")
    try:
        yield process
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)


@pytest.mark.integration
@pytest.mark.generations
def test_doctor_passes_on_a_healthy_topology_and_names_a_stopped_pool(beat, live):
    purge_lanes()
    TaskAttempt.objects.all().delete()  # crash rows earlier tests leave on purpose
    findings, error = _doctor()
    assert error is None, _failed(findings)
    checks = {f["check"]: f for f in findings}
    assert {"broker reachable", "broker generation", "broker alarm", "lane interactive", "pool bulk ping", "routes",
            "queue arguments", "beat alive", "beat leader", "timezones", "dead letters"} <= set(checks)
    assert str(beat.pid) in checks["beat leader"]["saw"]
    assert {f["symptom"] for f in findings} == {"tasks not executed", "tasks stuck or slow",
                                                 "periodic tasks not triggered", "work applied twice"}
    # Its findings on the operator's page too (a run of its own, not one cached before the beat started).
    forget_findings()
    staff = User.objects.create_user("doctor-reader", is_staff=True)
    client = Client()
    client.force_login(staff)
    page = client.get("/ops/").content.decode()
    # The lanes lead, with the leading beat's samples of their depth and consumers; doctor follows,
    # its ok rows folded away under one line.
    assert page.index('id="lanes"') < page.index('id="doctor"')
    assert LaneSample.objects.filter(lane="interactive", consumers=1).exists(), "the leading beat sampled no lane"
    sampled = re.findall(r"last hour(?::| \() ?([1-9]\d*) samples?", page)
    assert len(sampled) == len(LANE_NAMES), page
    folded = page[page.index('<details class="doctor-fine">'):page.index("</details>")]
    assert "beat leader" in folded
    oks = [f for f in findings if f["status"] == "ok"]
    assert f"{len(oks)} checks ok" in folded

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
    # Stale once its heartbeat is older than the lease allows: doctor asked until it says so, within a bound.
    _, error = wait_for(lambda: (run := _doctor()) and "beat alive" in _failed(run[0]) and run,
                        timeout=2 * LEASE_SECONDS + 30, interval=1, what="doctor to call the beat dead")
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


@pytest.mark.integration
def test_doctor_names_a_beat_that_schedules_in_another_timezone(live, settings, tmp_path):
    settings.BEAT_LEASE_SECONDS = LEASE_SECONDS
    # Deployed with other settings than the rest: its CELERY_TIMEZONE follows its own TIME_ZONE.
    process = _start_beat(live, tmp_path / "beat.log", TIME_ZONE="Europe/Paris")
    try:
        findings, error = _doctor()
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    saw = _failed(findings)["timezones"]
    assert f":{process.pid}=Europe/Paris" in saw
    assert "CELERY_TIMEZONE=UTC" in saw
    assert "timezones" in error


def test_doctor_names_an_entry_whose_task_no_worker_registers():
    every, _ = IntervalSchedule.objects.get_or_create(every=60, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(name="typo", task="weather.tasks.refresh_everything", interval=every,
                                expire_seconds=30)
    findings, _ = _doctor()
    assert "weather.tasks.refresh_everything" in _failed(findings)["entry typo"]


def test_doctor_fails_naming_a_unit_of_work_the_ledger_shows_applied_twice(admin_client):
    unit = effects.batch_unit(7, 0)
    Effect.objects.create(kind=Effect.Kind.BATCH, unit=unit, applied=True, task_id="first-copy")
    Effect.objects.create(kind=Effect.Kind.BATCH, unit=unit, applied=False, task_id="redelivered-copy")
    findings, error = _doctor()
    assert "effects ledger" not in _failed(findings), "a copy that found the work done is how it should be"
    Effect.objects.create(kind=Effect.Kind.BATCH, unit=unit, applied=True, task_id="second-copy")
    findings, error = _doctor()
    assert f"batch {unit} (2 times)" in _failed(findings)["effects ledger"]
    assert "effects ledger" in error
    # The unit it names, searched on the admin's read-only ledger page: the executions that applied it.
    page = admin_client.get("/admin/weather/effect/", {"q": unit}).content.decode()
    assert all(task_id in page for task_id in ("first-copy", "redelivered-copy", "second-copy")), page[-2000:]
    assert admin_client.get("/admin/weather/effect/add/").status_code == 403, "the ledger is history: read only"
    # Older than the day the check reads (the cleanup keeps a week for whoever looks): not on every scrape.
    Effect.objects.filter(unit=unit).update(recorded_at=timezone.now() - ledger.WINDOW - timedelta(minutes=1))
    assert [finding.status for finding in ledger.applied_once(Context())] == ["ok"]


def test_histogram_quantiles_read_cumulative_buckets():
    buckets = {0.1: 50.0, 0.5: 90.0, 1.0: 99.0, float("inf"): 100.0}
    assert histogram_quantiles(buckets, (0.5, 0.95, 0.99)) == [0.1, 1.0, 1.0]
    assert histogram_quantiles({}, (0.5,)) == [None]


def _entry(name: str, **fields: object) -> PeriodicTask:
    every, _ = IntervalSchedule.objects.get_or_create(every=60, period=IntervalSchedule.SECONDS)
    return PeriodicTask.objects.create(name=name, task="weather.tasks.cleanup_old_weather_data",
                                       **{"interval": every, "expire_seconds": 30, **fields})


def _entry_finding(findings: list[dict], name: str) -> dict:
    return next(f for f in findings if f["check"] == f"entry {name}")


def test_doctor_judges_each_periodic_entry():
    _entry("sound", last_run_at=timezone.now())
    _entry("no expiry", expire_seconds=None, last_run_at=timezone.now())
    _entry("stale copies", expire_seconds=600, last_run_at=timezone.now())
    _entry("missed", last_run_at=timezone.now() - timedelta(hours=1))
    _entry("switched off", enabled=False)
    findings, error = _doctor()
    assert _entry_finding(findings, "sound")["status"] == "ok"
    assert _entry_finding(findings, "no expiry")["status"] == "warn"
    assert "longer than its 0:01:00 interval" in _entry_finding(findings, "stale copies")["saw"]
    assert _entry_finding(findings, "missed")["status"] == "fail"
    assert "over 0:01:00 ago" in _entry_finding(findings, "missed")["saw"]
    assert _entry_finding(findings, "switched off")["status"] == "warn"
    assert "entry missed" in error


def test_an_entry_s_last_run_has_one_truth_on_the_ops_page_and_in_doctor(admin_client):
    sent = timezone.now() - timedelta(seconds=20)
    _entry("sent once", last_run_at=sent)
    _entry("never sent")
    findings, _ = _doctor()
    assert f"last sent {sent:%Y-%m-%d %H:%M} UTC" in _entry_finding(findings, "sent once")["saw"]
    assert "not sent yet" in _entry_finding(findings, "never sent")["saw"]
    assert "last sent" not in _entry_finding(findings, "never sent")["saw"]
    schedules = {entry["name"]: entry for entry in lanes_status()["schedules"]}
    assert schedules["sent once"]["last_run_at"] == sent.isoformat()
    assert schedules["never sent"]["last_run_at"] is None
    # On the page: the failing entry leads the doctor table, the schedules table agrees with it.
    _entry("missed", last_run_at=timezone.now() - timedelta(hours=1))
    forget_findings()
    page = admin_client.get("/ops/").content.decode()
    attention = page[page.index('id="doctor"'):page.index('<details class="doctor-fine">')]
    assert 'data-check="entry missed"' in attention
    assert "<td>not yet</td>" in page


def test_doctor_warns_of_a_crontab_hour_that_daylight_saving_skips_or_repeats():
    # Europe/Paris springs forward from 02:00 to 03:00 (last Sunday of March) and falls back through 02:00 again.
    at_two, _ = CrontabSchedule.objects.get_or_create(minute="30", hour="2", timezone="Europe/Paris")
    at_four, _ = CrontabSchedule.objects.get_or_create(minute="30", hour="4", timezone="UTC")
    for name, crontab in (("at two", at_two), ("at four", at_four)):
        PeriodicTask.objects.create(name=name, task="weather.tasks.cleanup_old_weather_data", crontab=crontab,
                                    expire_seconds=3600, last_run_at=timezone.now())
    findings, _ = _doctor()
    checks = {f["check"]: f for f in findings}
    assert checks["entry at two timezone"]["status"] == "warn"
    assert "[2] in Europe/Paris" in checks["entry at two timezone"]["saw"]
    assert "entry at four timezone" not in checks


@pytest.mark.integration
def test_doctor_names_a_worker_that_runs_other_tasks_than_the_routes(live):
    # A worker left on other code (one more task) beside the maintenance pool, on its queue.
    hostname = f"stray@{socket.gethostname()}"
    argv = [sys.executable, "-m", "celery", "-A", "server_config", "worker", "-P", "solo", "-Q", "maintenance",
            "-n", hostname, "--include", "tests.weather.ops.stray_tasks"]
    live.start_command("stray", argv, live.env, queues=[])  # the lane has consumers already: wait for its ping
    try:
        wait_for(lambda: current_app.control.ping(destination=[hostname], timeout=0.5), timeout=60,
                 what="the stray worker to answer")
        findings, error = _doctor()
    finally:
        live.stop("stray")
    failed = {check: saw for check, saw in _failed(findings).items() if check.startswith("tasks of stray@")}
    assert len(failed) == 1, _failed(findings)
    assert "registered but not routed ['tests.stray']" in next(iter(failed.values()))
    # The project's own pools run exactly the routed tasks.
    assert not any(check.startswith("tasks of interactive@") for check in _failed(findings))
    assert error is not None


@pytest.mark.integration
def test_doctor_warns_of_bulk_runs_near_their_soft_limit(live, sim):
    make_cities(1)
    started = time.time()
    # A 3 s soft limit and a provider taking 2.6 s: the run takes close to 90 % of its limit, and ends well.
    live.start("bulk", extra_env={"WEATHER_READ_TIMEOUT": "6"}, soft_time_limit=3, time_limit=8)
    try:
        sim.configure(latency_ms=2600)
        update_all_weather_data.delay().get(timeout=30)
        # The worker counts the run once it has ended (after the batch's own status write).
        wait_for(lambda: "bulk" in _recent_near_limit_runs(started), timeout=30, what="the slow run counted")
        findings, _ = _doctor()
    finally:
        live.start("bulk")
    checks = {f["check"]: f for f in findings}
    assert checks["lane bulk near soft limit"]["status"] == "warn"
    saw = checks["lane bulk near soft limit"]["saw"]
    assert saw.startswith("weather.tasks.refresh_weather_batch took 80%+ of its worker's soft limit"), saw
    assert "under a 3 s limit" in saw
