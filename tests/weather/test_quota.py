"""The provider quota: sliding windows, the interactive reserve, pauses, and races between processes."""

import os
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from tools.harness import ROOT
from weather.models import QuotaGrant
from weather.quota import Consumer, QuotaExceededError, QuotaLimits, pause_provider, reserve, usage

# Every test against both paths: the database function (PostgreSQL) and the ORM steps (SQLite).
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("implementation")]

LIMITS = QuotaLimits(per_minute=100, per_hour=250, per_day=1000, interactive_reserve=0.2)


def test_bulk_stops_at_its_share_and_interactive_uses_the_reserve():
    for _ in range(4):
        reserve(20, Consumer.BULK, LIMITS)
    with pytest.raises(QuotaExceededError, match="bulk quota per minute is used up"):
        reserve(1, Consumer.BULK, LIMITS)
    reserve(20, Consumer.INTERACTIVE, LIMITS)
    with pytest.raises(QuotaExceededError, match="interactive quota per minute"):
        reserve(1, Consumer.INTERACTIVE, LIMITS)
    assert usage()["minute"] == 100


def test_a_refused_reservation_takes_nothing_and_says_when_to_come_back():
    reserve(80, Consumer.BULK, LIMITS)
    before = timezone.now()
    with pytest.raises(QuotaExceededError) as caught:
        reserve(10, Consumer.BULK, LIMITS)
    assert QuotaGrant.objects.count() == 1
    assert before + timedelta(seconds=55) < caught.value.retry_at <= timezone.now() + timedelta(minutes=1)


def test_old_grants_leave_the_minute_window_but_count_for_the_hour():
    QuotaGrant.objects.create(granted_at=timezone.now() - timedelta(minutes=2), locations=150, consumer="bulk")
    reserve(40, Consumer.BULK, LIMITS)  # the minute window is empty again
    with pytest.raises(QuotaExceededError, match="per hour"):
        reserve(20, Consumer.BULK, LIMITS)  # 150 + 40 + 20 > 250 * 0.8


def test_a_request_larger_than_any_window_is_a_configuration_error():
    with pytest.raises(ValueError, match="can never fit"):
        reserve(81, Consumer.BULK, LIMITS)


def test_a_provider_pause_stops_every_consumer():
    pause_provider(30)
    with pytest.raises(QuotaExceededError, match="pause") as caught:
        reserve(1, Consumer.INTERACTIVE, LIMITS)
    assert caught.value.wait_seconds() > 25


def test_hosts_with_skewed_clocks_share_one_timeline(monkeypatch):
    # A worker whose clock runs ten minutes slow must not stamp its grants outside
    # the window the other workers count.
    real_now = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: real_now() - timedelta(minutes=10))
    for _ in range(4):
        reserve(20, Consumer.BULK, LIMITS)
    monkeypatch.setattr(timezone, "now", real_now)
    with pytest.raises(QuotaExceededError, match="bulk quota per minute is used up"):
        reserve(1, Consumer.BULK, LIMITS)


def test_zero_means_unlimited():
    unlimited = QuotaLimits(0, 0, 0, 0.1)
    for _ in range(5):
        reserve(1000, Consumer.BULK, unlimited)
    assert usage()["day"] == 5000


def test_processes_competing_at_once_never_exceed_the_quota(implementation):
    from django.db import connection

    env = {**os.environ, "POSTGRES_DB": connection.settings_dict["NAME"]}
    # All start at the same moment, after their start-up, so the reservations overlap.
    start_at = time.time() + 4
    argv = [sys.executable, "-m", "tools.quota_hammer", "--attempts", "40", "--locations", "1",
            "--per-minute", "100", "--per-hour", "250", "--per-day", "1000", "--reserve", "0.2",
            "--start-at", str(start_at), *(["--orm"] if implementation == "ORM" else [])]
    processes = [subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(4)]
    granted = [int(process.communicate(timeout=60)[0] or 0) for process in processes]
    # A process that was still starting up at start_at exits 3: then they did not race.
    assert [process.returncode for process in processes] == [0, 0, 0, 0]
    # Bulk may fill 80 of the 100-location minute, one location a grant, whoever wins them.
    assert sum(granted) == 80
    assert usage()["minute"] == 80
    assert QuotaGrant.objects.count() == 80
