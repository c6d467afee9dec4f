"""`manage.py refresh_all [--wait] [--if-empty]`: enqueue the refresh of every active city."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from routing.broker import BrokerUnavailableError
from weather.models import RefreshRun, WeatherData
from weather.publishing import publishing
from weather.tasks import update_all_weather_data


class Command(BaseCommand):
    """Start a refresh on the bulk lane; optionally follow it to the end."""

    help = "Enqueue the refresh of every active city; --wait shows progress and the summary."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--wait", action="store_true", help="follow the batches until all are done")
        parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait at most")
        parser.add_argument("--if-empty", action="store_true",
                            help="only when no reading is stored yet (the first scripts/run's warm-up)")

    def handle(self, *args: object, **options: object) -> None:
        if options["if_empty"] and WeatherData.objects.exists():
            self.stdout.write("readings already stored: no warm-up refresh")
            return
        try:
            with publishing():
                result = update_all_weather_data.delay()
        except BrokerUnavailableError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(f"refresh enqueued as task {result.id}")
        if not options["wait"]:
            return
        deadline = time.monotonic() + options["timeout"]
        summary = result.get(timeout=options["timeout"], propagate=True)
        run = RefreshRun.objects.get(pk=summary["run_id"])
        with tqdm(total=run.batches_total, unit="batch", desc=f"refresh {run.pk}") as bar:
            while True:
                summary = run.summary()
                bar.update(summary["batches_done"] - bar.n)
                if summary["finished"]:
                    break
                if time.monotonic() > deadline:
                    raise CommandError(f"timed out; progress so far: {summary}")
                time.sleep(0.5)
        self.stdout.write(
            f"refreshed {summary['cities_refreshed']} of {summary['cities']} cities in "
            f"{summary['batches']} batches; {summary['cities_failed']} failed"
        )
