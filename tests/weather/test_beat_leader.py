"""One beat sends, however many run: two real beat processes, one message per due slot, a standby that takes over."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from celery import current_app as app
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from tools.harness import ROOT, purge_lanes, wait_for
from weather.beat import hold_lease
from weather.models import BeatHeartbeat, BeatLease

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

LEASE_SECONDS = 3
EVERY_SECONDS = 2


def test_the_lease_goes_to_one_holder_until_it_stops_renewing():
    assert hold_lease("a", 60)
    assert not hold_lease("b", 60)
    assert hold_lease("a", 60)
    BeatLease.objects.update(renewed_at=datetime(2000, 1, 1).astimezone())
    assert hold_lease("b", 60)
    assert not hold_lease("a", 60)


def _sent(queue: str) -> list[dict]:
    """Every message on the queue: headers, taken off (they are the test's own)."""
    headers = []
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        while (message := channel.basic_get(queue, no_ack=True)) is not None:
            headers.append(message.headers)
    return headers


def _start_beat(env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "workers", "beat"], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)


def _sender(headers: dict) -> int:
    # Celery stamps every message with its publisher: "gen<pid>@<host>".
    return int(headers["origin"].split("@")[0].removeprefix("gen"))


def test_two_beats_send_each_slot_once_and_the_standby_takes_over(live, tmp_path):
    every, _ = IntervalSchedule.objects.get_or_create(every=EVERY_SECONDS, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(name="lease probe", task="weather.tasks.cleanup_old_weather_data",
                                interval=every, expire_seconds=60)
    live.stop("maintenance")  # what beat sends stays on the queue to be counted
    purge_lanes()
    env = {**live.env, "BEAT_LEASE_SECONDS": str(LEASE_SECONDS)}
    beats: list[subprocess.Popen] = []
    try:
        first = _start_beat(env, tmp_path / "first.log")
        beats.append(first)
        wait_for(lambda: BeatLease.objects.filter(holder__endswith=f":{first.pid}").exists(), timeout=60,
                 what="the first beat to take the lease")
        second = _start_beat(env, tmp_path / "second.log")
        beats.append(second)
        wait_for(lambda: BeatHeartbeat.objects.filter(instance__endswith=f":{second.pid}", leading=False).exists(),
                 timeout=60, what="the second beat to stand by")
        time.sleep(4 * EVERY_SECONDS + 1)
        while_both = _sent("maintenance")
        assert len(while_both) >= 3, while_both
        assert {_sender(h) for h in while_both} == {first.pid}, "only the leader sends"

        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        killed_at = time.monotonic()
        taken = wait_for(lambda: [h for h in _sent("maintenance") if _sender(h) == second.pid], timeout=30,
                         what="the standby to send")
        # Within the lease, a tick and one interval of the kill.
        assert time.monotonic() - killed_at < LEASE_SECONDS + 1 + EVERY_SECONDS + 3
        assert BeatLease.objects.get().holder.endswith(f":{second.pid}")
        time.sleep(2 * EVERY_SECONDS)
        after = taken + _sent("maintenance")
        assert {_sender(h) for h in after} == {second.pid}
        # One message a slot across the handover: every send is one interval after the previous one.
        expiries = sorted(datetime.fromisoformat(h["expires"]) for h in [*while_both, *after])
        gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(expiries)]
        assert min(gaps) >= EVERY_SECONDS * 0.5, gaps
    finally:
        for beat in beats:
            with contextlib.suppress(ProcessLookupError):
                os.kill(beat.pid, signal.SIGKILL)
            beat.wait(timeout=10)
        PeriodicTask.objects.filter(name="lease probe").delete()
        purge_lanes()
        live.start("maintenance")
