"""django-celery-beat and Celery's scheduler: making a running scheduler read every entry afresh.

A beat that takes over the lease must forget what it read before (the previous leader has
moved each entry's last run on). DatabaseScheduler re-reads everything when its first-read
flag is set, and Celery's scheduler rebuilds its heap when the heap is gone; neither has a
public switch.
"""

from __future__ import annotations

from celery.beat import Scheduler

CHECKED_AGAINST = {"django-celery-beat": "2.9.0", "celery": "5.7.0"}


def reread_entries(scheduler: Scheduler) -> None:
    """On its next tick, read every entry from the database and rebuild the due-time heap from them."""
    scheduler._initial_read = True
    scheduler._heap = None
