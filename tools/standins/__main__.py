"""`python -m tools.standins [--broker 3|4 ...]`: build the test stand-in images, print their tags."""

from __future__ import annotations

import argparse
import sys
import time

from tools.standins import BROKER_SUITES, StandinBuildError, ensure_all


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.standins", description=__doc__)
    parser.add_argument("--broker", action="append", choices=sorted(BROKER_SUITES),
                        help="RabbitMQ generation(s) to build (default: all)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        tags = ensure_all(args.broker)
    except StandinBuildError as error:
        print(f"tools.standins: {error}", file=sys.stderr)
        return 1
    for name, tag in tags.items():
        print(f"{name:10} {tag}")
    print(f"ready in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
