"""One beat sends, however many run: two real beat processes, one message per due slot, a standby that takes over."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
from celery import current_app as app
from django.utils import timezone
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


def _collect(queue: str, enough: Callable[[list[dict]], bool], what: str, timeout: float = 30,
             already: list[dict] | None = None) -> list[dict]:
    """Take the queue's messages until what was taken (with `already`) is enough; every message taken."""
    taken = list(already or [])
    wait_for(lambda: taken.extend(_sent(queue)) or enough(taken), timeout=timeout, interval=0.2, what=what)
    return taken


def _start_beat(env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "workers", "beat"], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)


def _sender(headers: dict) -> int:
    # Celery stamps every message with its publisher: "gen<pid>@<host>".
    return int(headers["origin"].split("@")[0].removeprefix("gen"))


@pytest.fixture
def two_beats(live, tmp_path) -> Iterator[tuple[subprocess.Popen, subprocess.Popen]]:
    """Two real beats on a probe entry every EVERY_SECONDS: the first leads, the second stands by."""
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
        yield first, second
    finally:
        for beat in beats:
            with contextlib.suppress(ProcessLookupError):
                os.kill(beat.pid, signal.SIGCONT)
                os.kill(beat.pid, signal.SIGKILL)
            beat.wait(timeout=10)
        PeriodicTask.objects.filter(name="lease probe").delete()
        purge_lanes()
        live.start("maintenance")


def _one_a_slot(sent: list[dict]) -> list[float]:
    """The gaps between consecutive sends' expiries: each at least half an interval when no slot went twice."""
    expiries = sorted(datetime.fromisoformat(h["expires"]) for h in sent)
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(expiries)]
    assert min(gaps) >= EVERY_SECONDS * 0.5, gaps
    return gaps


def test_two_beats_send_each_slot_once_and_the_standby_takes_over(two_beats):
    first, second = two_beats
    while_both = _collect("maintenance", lambda sent: len(sent) >= 3, what="three sends while both run")
    assert {_sender(h) for h in while_both} == {first.pid}, "only the leader sends"

    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    # Within the lease, a tick and one interval of the kill (and a little for a loaded machine).
    taken = _collect("maintenance", lambda sent: any(_sender(h) == second.pid for h in sent),
                     timeout=LEASE_SECONDS + 1 + EVERY_SECONDS + 3, what="the standby to send")
    assert BeatLease.objects.get().holder.endswith(f":{second.pid}")
    late = [h for h in taken if _sender(h) == first.pid]  # sent by the first between the count and the kill
    after = _collect("maintenance", lambda sent: len(sent) >= 3, what="more sends by the new leader",
                     already=[h for h in taken if h not in late])
    assert {_sender(h) for h in after} == {second.pid}
    # One message a slot across the handover.
    _one_a_slot([*while_both, *late, *after])


def test_a_leader_paused_past_its_lease_comes_back_as_a_standby_and_sends_no_slot_again(two_beats):
    # SIGSTOP, as a VM paused, a process swapped out or a debugger would: the leader does not know it was away.
    first, second = two_beats
    while_both = _collect("maintenance", lambda sent: len(sent) >= 2, what="sends while both run")
    first.send_signal(signal.SIGSTOP)
    try:
        taken = _collect("maintenance", lambda sent: any(_sender(h) == second.pid for h in sent),
                         timeout=LEASE_SECONDS + 1 + EVERY_SECONDS + 3, what="the standby to take over")
    finally:
        resumed_at = timezone.now()
        first.send_signal(signal.SIGCONT)
    # It resumes mid-tick wherever it stopped; its next tick finds the lease taken.
    wait_for(lambda: BeatHeartbeat.objects.filter(instance__endswith=f":{first.pid}", leading=False,
                                                  beat_at__gt=resumed_at).exists(),
             timeout=30, what="the resumed beat to stand by")
    late = [h for h in taken if _sender(h) == first.pid]
    after = _collect("maintenance", lambda sent: len(sent) >= 3, what="sends after the old leader resumed",
                     already=[h for h in taken if h not in late])
    assert first.poll() is None, "the paused beat lives on as a standby"
    assert {_sender(h) for h in after} == {second.pid}, "the resumed beat sent nothing"
    assert BeatLease.objects.get().holder.endswith(f":{second.pid}")
    _one_a_slot([*while_both, *late, *after])
