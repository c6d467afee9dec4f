"""`manage.py doctor [--json]`: the troubleshooting list as checks; exits 1 when any check fails."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError, CommandParser

from weather.ops.doctor import FAIL, OK, SYMPTOMS, WARN
from weather.ops.doctor.checkup import examine

MARKS = {OK: "ok  ", WARN: "WARN", FAIL: "FAIL"}


class Command(BaseCommand):
    """Tasks not executed, stuck or slow, periodic tasks not triggered, work applied twice: each says what to do."""

    help = "Check the broker, pools, lanes, beat, schedules and effects ledger; exit 1 naming whatever fails."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="one JSON object per finding")

    def handle(self, *args: object, **options: object) -> None:
        findings = examine()
        if options["json"]:
            for finding in findings:
                self.stdout.write(json.dumps(finding.as_dict()))
        else:
            for symptom in SYMPTOMS:
                self.stdout.write(self.style.MIGRATE_HEADING(symptom.capitalize()))
                for finding in (f for f in findings if f.symptom == symptom):
                    style = {OK: self.style.SUCCESS, WARN: self.style.WARNING, FAIL: self.style.ERROR}[finding.status]
                    self.stdout.write(f"  {style(MARKS[finding.status])} {finding.check}: {finding.saw}")
                    if finding.todo:
                        self.stdout.write(f"         -> {finding.todo}")
        failed = [f.check for f in findings if f.status == FAIL]
        if failed:
            raise CommandError(f"doctor: {len(failed)} check(s) failed: {', '.join(failed)}")
