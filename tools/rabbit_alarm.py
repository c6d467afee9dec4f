"""A real RabbitMQ memory alarm for tests, always lifted: on exit, and by a watchdog if the test process dies.

The alarm is raised by lowering the node's memory watermark at run time
(`set_vm_memory_high_watermark`), which blocks every publisher on the node. It
is lifted by putting back the watermark the node was configured with (its
application environment, which the run-time change leaves alone), never a value
read during the test: a run killed mid-alarm cannot make its alarm "the original".
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator

# Puts back the configured watermark, whatever form it was given in.
RESTORE = ("vm_memory_monitor:set_vm_memory_high_watermark("
           "element(2, application:get_env(rabbit, vm_memory_high_watermark))).")
# Far below any real memory use: the node raises the alarm on its next memory check.
ALARMING_WATERMARK = "0.00001"
# The watchdog lifts the alarm after this long even if nothing else does (a test killed with -9).
WATCHDOG_SECONDS = 240


def _rabbitmqctl(*args: str) -> str:
    return subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, check=True,
                          timeout=60).stdout.strip()


def alarms() -> str:
    """The node's raised resource alarms, as rabbit_alarm reports them ("[]" when none)."""
    return _rabbitmqctl("eval", "rabbit_alarm:get_alarms().")


def lift() -> None:
    """Put the configured watermark back and wait until the node has no alarm."""
    _rabbitmqctl("eval", RESTORE)
    deadline = time.monotonic() + 30
    while "memory" in alarms():
        if time.monotonic() > deadline:
            raise RuntimeError(f"RabbitMQ still reports {alarms()} after restoring its watermark")
        time.sleep(0.2)


@contextlib.contextmanager
def memory_alarm(watchdog_seconds: float = WATCHDOG_SECONDS) -> Iterator[None]:
    """RabbitMQ's memory alarm raised for the body, lifted afterwards whatever happens."""
    # Its own session, so a signal to the test's process group does not take it down too.
    watchdog = subprocess.Popen(["sh", "-c", f"sleep {watchdog_seconds}; rabbitmqctl -q eval '{RESTORE}'"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _rabbitmqctl("set_vm_memory_high_watermark", ALARMING_WATERMARK)
        deadline = time.monotonic() + 30
        while "memory" not in alarms():
            if time.monotonic() > deadline:
                raise RuntimeError("RabbitMQ raised no memory alarm under a near-zero watermark")
            time.sleep(0.2)
        yield
    finally:
        try:
            lift()
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(watchdog.pid, signal.SIGKILL)
            watchdog.wait(timeout=10)
