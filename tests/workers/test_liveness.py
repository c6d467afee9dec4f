"""A worker's liveness file: touched by a running consumer loop, stale once the loop stops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tools.harness import ROOT, wait_for
from workers.liveness import STALE_AFTER_S, TOUCH_EVERY_S, alive, liveness_file


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
    env = {**live.env, "LIVENESS_DIR": str(tmp_path)}
    live.start("maintenance", extra_env={"LIVENESS_DIR": str(tmp_path)})
    try:
        wait_for(lambda: _alive_command("maintenance", env) == 0, timeout=30, what="the probe to pass")
        # A loop that stops (SIGSTOP: the process is there, its loop is not) stops touching the file.
        path = tmp_path / "f_brain-maintenance.alive"
        os.kill(live.processes["maintenance"].pid, signal.SIGSTOP)
        try:
            touched = path.stat().st_mtime
            time.sleep(TOUCH_EVERY_S + 2)
            assert path.stat().st_mtime == touched, "a stopped loop must not keep the file fresh"
        finally:
            os.kill(live.processes["maintenance"].pid, signal.SIGCONT)
    finally:
        live.start("maintenance")
