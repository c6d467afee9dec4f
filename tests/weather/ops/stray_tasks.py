"""A task no route names, for a worker that runs other code than the rest (doctor's task-list check)."""

from celery import shared_task


@shared_task(name="tests.stray")
def stray() -> None:
    """Never sent: only registered."""
