"""Measurement environment for benchmarks and fault reports: own database and vhost, tables, JSON results."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import urllib.parse
from pathlib import Path

import psycopg2
from kombu import Connection

from routing import BrokerGeneration

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def prepare(name: str, broker_url: str | None = None) -> None:
    """Point this process (and the workers it starts) at `f_brain_<name>` (or `broker_url`), then set up Django.

    The vhost is made on the machine's RabbitMQ, or on the test broker `python -m tools.rabbit_containers -- ...`
    runs the benchmark against (it sets CELERY_BROKER_URL and TEST_BROKER_CTL); RABBITMQ_GENERATION is read from
    the broker when not given.
    """
    database = f"f_brain_{name}"
    vhost = f"f_brain_{name}"
    ctl = [*shlex.split(os.environ.get("TEST_BROKER_CTL") or "rabbitmqctl"), "-q"]
    node = urllib.parse.urlsplit((os.environ.get("CELERY_BROKER_URL") if os.environ.get("TEST_BROKER_CTL") else None)
                                 or "amqp://guest:guest@127.0.0.1:5672/")
    broker_url = broker_url or f"{node.scheme}://{node.netloc}/{vhost}"
    os.environ.update({
        "USE_POSTGRES": "true",
        "POSTGRES_HOST": os.environ.get("POSTGRES_HOST", "127.0.0.1"),
        "POSTGRES_USER": os.environ.get("POSTGRES_USER", "postgres"),
        "POSTGRES_PASSWORD": os.environ.get("POSTGRES_PASSWORD", ""),
        "POSTGRES_DB": database,
        "SECRET_KEY": "benchmark-only-" + "k" * 10 + "0123456789abcdefghijklmnopqrstuvwxyz",
        "DEBUG": "false",
        "ALLOWED_HOSTS": "localhost,127.0.0.1",
        "CELERY_BROKER_URL": broker_url,
        "DJANGO_SETTINGS_MODULE": "server_config.settings",
    })
    admin = psycopg2.connect(host=os.environ["POSTGRES_HOST"], user=os.environ["POSTGRES_USER"],
                             password=os.environ["POSTGRES_PASSWORD"], dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database])
        if cursor.fetchone() is None:
            cursor.execute(f'CREATE DATABASE "{database}"')
    admin.close()
    # Afresh each run: a queue an older topology declared differently cannot be redeclared in place.
    subprocess.run([*ctl, "delete_vhost", vhost], capture_output=True)
    subprocess.run([*ctl, "add_vhost", vhost], check=True, capture_output=True)
    subprocess.run([*ctl, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"], check=True,
                   capture_output=True)
    if not os.environ.get("RABBITMQ_GENERATION"):
        with Connection(broker_url.split(";")[0]) as connection:
            connection.connect()
            version = connection.connection.server_properties["version"]
        os.environ["RABBITMQ_GENERATION"] = str(BrokerGeneration.of_version(
            version.decode() if isinstance(version, bytes) else version).value)

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def fresh_cities(count: int, name: str) -> None:
    """Empty every table a run writes (readings, runs, grants, crash counts, results) and make `count` cities."""
    from django.db import connection

    from weather.models import City

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE weather_weatherdata, weather_refreshbatch, weather_refreshrun, weather_effect, "
                       "weather_quotagrant, weather_taskattempt, django_celery_results_taskresult, weather_city "
                       "RESTART IDENTITY CASCADE")
    City.objects.bulk_create(City(name=f"{name} {i}", country_code="FR", latitude=(i * 0.0137) % 80,
                                  longitude=(i * 0.0291) % 170) for i in range(count))


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[max(0, min(998, int(q * 10) - 1))]


def machine() -> dict:
    """What the figures were measured on."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }


def print_table(headers: list[str], rows: list[list[object]]) -> None:
    """A plain aligned table on stdout."""
    cells = [[f"{c:.3f}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


def add_label_argument(parser: argparse.ArgumentParser) -> None:
    """--label: a name for one tree's figures, so runs of two trees (before and after a change) sit side by side."""
    parser.add_argument("--label", default="", help="a name for this tree's figures (for example 'before')")


def write_json(name: str, payload: dict, label: str = "") -> Path:
    """Save results under bench/results/ as <name>.json, or <name>_<label>.json."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}_{label}.json" if label else RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path
