"""prometheus_client: naming each process's metric files in multiprocess mode by something other than its pid.

The library names them by process id and offers no public setting for the identifier;
its value class is swapped for one built with ours.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import values

CHECKED_AGAINST = "0.26.0"


def identify_processes_by(identifier: Callable[[], str]) -> None:
    """Metrics created from now on write files named by `identifier()` instead of the pid."""
    values.ValueClass = values.MultiProcessValue(identifier)
