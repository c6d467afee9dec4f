"""The harness's bounded waits: they fail at their bound, and leave pytest-timeout's alarm as it was."""

import signal
import threading

import pytest

from tools.harness import within


def test_a_call_past_its_bound_is_interrupted_and_fails():
    never = threading.Event()
    with pytest.raises(AssertionError, match=r"the event did not happen within 0\.2 s"), within(0.2, "the event"):
        never.wait(30)


def test_a_call_inside_its_bound_passes_and_the_outer_alarm_is_put_back():
    outer = signal.getsignal(signal.SIGALRM)
    signal.setitimer(signal.ITIMER_REAL, 60)
    try:
        with within(5, "nothing"):
            pass
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 50 < remaining <= 60
        assert signal.getsignal(signal.SIGALRM) is outer
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
