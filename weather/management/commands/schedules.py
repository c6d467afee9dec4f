"""`manage.py schedules [--apply [NAME ...]]`: the periodic entries of weather/schedules.py against the database."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from weather.schedulesync import UnknownEntryError, apply, code_entries, differences


class Command(BaseCommand):
    """Show (exit 1 when any differs) or apply the code's periodic entries; beat only seeds missing ones."""

    help = ("Compare the periodic entries in weather/schedules.py with the database (exit 1 when any differs); "
            "--apply writes the code's version, keeping each entry's enabled state and last run.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--diff", action="store_true", help="show what differs (the default)")
        parser.add_argument("--apply", nargs="*", metavar="NAME", default=None,
                            help="write the code's version of every differing entry, or of those named")

    def handle(self, *args: object, **options: object) -> None:
        if options["apply"] is not None:
            try:
                applied = apply(options["apply"] or None)
            except UnknownEntryError as error:
                raise CommandError(str(error)) from error
            for difference in applied:
                self.stdout.write(f"applied {difference.describe()}")
            if not applied:
                self.stdout.write("the database already holds the code's entries")
            return
        found = differences()
        if not found:
            self.stdout.write(f"{len(code_entries())} entries: the database holds the code's")
            return
        for difference in found:
            self.stdout.write(difference.describe())
        raise CommandError(f"{len(found)} of {len(code_entries())} entries differ from weather/schedules.py: "
                           "`manage.py schedules --apply` writes the code's", returncode=1)
