"""A worker's liveness file: touched by a running consumer loop, stale once the loop stops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tools.harness import ROOT, wait_for
from workers.liveness import STALE_AFTER_S, TOUCH_EVERY_ENV, alive, liveness_file

WATCHED_TOUCH_EVERY_S = 2.0


def _alive_command(pool: str, env: dict[str, str]) -> int:
    return subprocess.run([sys.executable, "-m", "workers", "alive", pool], cwd=ROOT, env=env,
                          capture_output=True, timeout=60).returncode


def test_freshness_is_judged_by_the_file_time(tmp_path, monkeypatch):
    monkeypatch.setenv("LIVENESS_DIR", str(tmp_path))
    assert not alive("bulk"), "no file: never started"
    liveness_file("bulk").touch()
    assert alive("bulk")
    assert not alive("bulk", now=time.time() + STALE_AFTER_S + 1)


@pytest.mark.integration
@pytest.mark.generations
def test_a_running_pool_keeps_its_file_fresh_and_a_stopped_loop_lets_it_go_stale(live, tmp_path):
    # Touched every 2 s rather than 10: the test watches two touches go by.
    liveness_env = {"LIVENESS_DIR": str(tmp_path), TOUCH_EVERY_ENV: str(WATCHED_TOUCH_EVERY_S)}
    env = {**live.env, **liveness_env}
    # Bulk runs alongside as the witness: a loop that runs touches its file every WATCHED_TOUCH_EVERY_S.
    live.start_all(["maintenance", "bulk"], extra_env=liveness_env)
    try:
        wait_for(lambda: _alive_command("maintenance", env) == 0, timeout=30, what="the probe to pass")
        path, witness = tmp_path / "f_brain-maintenance.alive", tmp_path / "f_brain-bulk.alive"
        wait_for(witness.exists, timeout=30, what="the witness's first touch")
        # A loop that stops (SIGSTOP: the process is there, its loop is not) stops touching the file.
        os.kill(live.processes["maintenance"].pid, signal.SIGSTOP)
        try:
            touched = path.stat().st_mtime
            marks = [witness.stat().st_mtime]

            def witness_touched_twice() -> bool:
                if (mark := witness.stat().st_mtime) != marks[-1]:
                    marks.append(mark)
                return len(marks) >= 3

            # Two touches of the witness take at least one interval: the stopped loop had its turn meanwhile.
            wait_for(witness_touched_twice, timeout=4 * WATCHED_TOUCH_EVERY_S + 30, interval=0.2,
                     what="the running pool to touch its file twice")
            assert path.stat().st_mtime == touched, "a stopped loop must not keep the file fresh"
        finally:
            os.kill(live.processes["maintenance"].pid, signal.SIGCONT)
    finally:
        live.start_all(["maintenance", "bulk"])
