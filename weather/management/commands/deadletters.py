"""`manage.py deadletters list|replay|purge`: inspect and recover messages that failed for good."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError, CommandParser

from routing.broker import BrokerUnavailableError
from weather.ops import deadletters


class Command(BaseCommand):
    """List dead messages with their lane and cause, replay them onto their lane, or purge them."""

    help = "Dead-letter queue: list (task, arguments, lane, why), replay onto the original lane, purge."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        listing = sub.add_parser("list", help="show dead messages without removing them")
        listing.add_argument("--limit", type=int, default=None)
        listing.add_argument("--json", action="store_true", help="one JSON object per line")
        again = sub.add_parser("replay", help="publish dead messages back on their own lane")
        again.add_argument("task_ids", nargs="*", help="only these task ids")
        again.add_argument("--all", action="store_true", help="replay every dead message")
        drop = sub.add_parser("purge", help="delete every dead message")
        drop.add_argument("--yes", action="store_true", help="confirm")

    def handle(self, *args: object, **options: object) -> None:
        try:
            getattr(self, f"_{options['action']}")(options)
        except BrokerUnavailableError as error:
            raise CommandError(str(error)) from error

    def _list(self, options: dict) -> None:
        letters = deadletters.list_dead_letters(options["limit"])
        if options["json"]:
            for letter in letters:
                self.stdout.write(json.dumps(letter.as_dict()))
            return
        self.stdout.write(f"{len(letters)} dead message(s)")
        for letter in letters:
            self.stdout.write(f"- {letter.task_id}  {letter.task}  lane={letter.lane}  reason={letter.reason}\n"
                              f"  args: {letter.args}\n  why:  {letter.why}")

    def _replay(self, options: dict) -> None:
        if not options["task_ids"] and not options["all"]:
            raise CommandError("name task ids to replay, or pass --all")
        wanted = None if options["all"] else set(options["task_ids"])
        replayed = deadletters.replay(wanted)
        for letter in replayed:
            self.stdout.write(f"replayed {letter.task_id} ({letter.task}) onto {letter.lane}")
        if wanted is not None and (missing := wanted - {letter.task_id for letter in replayed}):
            raise CommandError(f"not found in the dead-letter queue: {', '.join(sorted(missing))}")
        self.stdout.write(f"{len(replayed)} message(s) replayed")

    def _purge(self, options: dict) -> None:
        if not options["yes"]:
            raise CommandError("purge deletes every dead message for good; pass --yes to confirm")
        self.stdout.write(f"{deadletters.purge()} message(s) purged")
