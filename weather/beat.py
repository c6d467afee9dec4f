"""A database beat scheduler that seeds schedules from settings but never overwrites admin edits."""

from __future__ import annotations

from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler


class SeedingDatabaseScheduler(DatabaseScheduler):
    """Creates the settings' entries that are missing; leaves existing ones as edited.

    django-celery-beat's own scheduler re-applies CELERY_BEAT_SCHEDULE with
    update_or_create on every start, silently reverting what an operator changed
    in the admin.
    """

    def setup_schedule(self) -> None:
        """Seed missing entries only."""
        wanted = self.app.conf.beat_schedule or {}
        existing = set(PeriodicTask.objects.filter(name__in=list(wanted)).values_list("name", flat=True))
        self.update_from_dict({name: entry for name, entry in wanted.items() if name not in existing})

    def install_default_entries(self, data: dict) -> None:
        """Skip Celery's `celery.backend_cleanup`: the maintenance cleanup trims results in small batches."""
