"""Reserve provider quota in a loop from its own process; prints the locations granted.

    python -m tools.quota_hammer --attempts 30 --locations 7 --per-minute 100 --reserve 0.2 [--start-at EPOCH]

Several of these started with the same --start-at begin together, after their
slow start-up, so their reservations really overlap.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--attempts", type=int, required=True)
    parser.add_argument("--locations", type=int, required=True)
    parser.add_argument("--per-minute", type=int, required=True)
    parser.add_argument("--per-hour", type=int, default=0)
    parser.add_argument("--per-day", type=int, default=0)
    parser.add_argument("--reserve", type=float, default=0.0)
    parser.add_argument("--consumer", choices=("bulk", "interactive"), default="bulk")
    parser.add_argument("--start-at", type=float, default=0.0, help="epoch seconds to start at")
    parser.add_argument("--orm", action="store_true", help="reserve through the ORM, not the database function")
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server_config.settings")
    import django

    django.setup()
    from weather import dbfunctions
    from weather.quota import Consumer, QuotaExceededError, QuotaLimits, reserve

    if args.orm:
        dbfunctions.VENDORS = frozenset()

    limits = QuotaLimits(args.per_minute, args.per_hour, args.per_day, args.reserve)
    granted = 0
    if args.start_at and time.time() > args.start_at:
        print("late: started after --start-at; the processes did not race", file=sys.stderr)
        return 3
    time.sleep(max(0.0, args.start_at - time.time()))
    for _ in range(args.attempts):
        try:
            reserve(args.locations, Consumer(args.consumer), limits)
            granted += args.locations
        except QuotaExceededError:
            pass
    print(granted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
