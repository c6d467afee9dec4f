"""Where the database and the broker are: URLs as a PaaS gives them first, then the POSTGRES_* variables."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from envvars import env_bool, env_int, env_str

# Checked in this order; the first one set is the broker. CELERY_BROKER_URL is the project's
# own; RABBITMQ_URL is what docker-compose and most RabbitMQ add-ons set; CLOUDAMQP_URL is
# CloudAMQP's add-on (Heroku and others); AMQP_URL some platforms' generic name.
BROKER_URL_VARIABLES = ("CELERY_BROKER_URL", "RABBITMQ_URL", "CLOUDAMQP_URL", "AMQP_URL")
LOCAL_BROKER_URL = "amqp://guest:guest@localhost:5672//"


def broker_url() -> str:
    """The broker URL from the first of BROKER_URL_VARIABLES that is set, else the local development broker."""
    for name in BROKER_URL_VARIABLES:
        value = env_str(name)
        if value:
            return value
    return LOCAL_BROKER_URL


def postgres_options(keepalive: tuple[int, int, int]) -> dict[str, Any]:
    """Fail fast when PostgreSQL is away (tasks retry instead of hanging); find a vanished peer by TCP keepalive."""
    idle, interval, probes = keepalive
    return {
        "connect_timeout": env_int("POSTGRES_CONNECT_TIMEOUT", 5, minimum=1),
        "keepalives": 1,
        "keepalives_idle": idle,
        "keepalives_interval": interval,
        "keepalives_count": probes,
    }


def sqlite_database(var_dir: Path) -> dict[str, Any]:
    """SQLite under VAR_DIR: web, the pools and beat share one file locally (its folder made on first connect)."""
    return {
        "ENGINE": "server_config.sqlite",
        "NAME": var_dir / "db.sqlite3",
        # WAL lets readers and one writer overlap; IMMEDIATE transactions wait instead of failing.
        "OPTIONS": {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }


def database(var_dir: Path, keepalive: tuple[int, int, int],
             refuse_placeholder: Callable[[str, str | None], None]) -> dict[str, Any]:
    """The default database: DATABASE_URL if set (it wins), else POSTGRES_* with USE_POSTGRES, else SQLite."""
    # Connections kept between requests and between tasks (server_config/celery.py): opening one
    # cost each status poll and each task about 10 ms (bench/click.py, bench/click_profile.py).
    # Health checks drop a connection PostgreSQL closed before it is used again.
    conn_max_age = env_int("POSTGRES_CONN_MAX_AGE", 300, minimum=0)
    url = env_str("DATABASE_URL")
    if url:
        try:
            parsed = dj_database_url.parse(url, conn_max_age=conn_max_age, conn_health_checks=True)
        except ValueError as error:
            # dj-database-url names the scheme it does not know; the URL itself may hold a password.
            raise ImproperlyConfigured(f"DATABASE_URL is not a database URL: {error}") from None
        if parsed["ENGINE"] == "django.db.backends.postgresql":
            refuse_placeholder("DATABASE_URL's password", parsed.get("PASSWORD"))
            parsed["OPTIONS"] = postgres_options(keepalive) | parsed.get("OPTIONS", {})
        elif parsed["ENGINE"] != "django.db.backends.sqlite3":
            raise ImproperlyConfigured(f"DATABASE_URL names {parsed['ENGINE']}: F_BRAIN runs on PostgreSQL "
                                       "(postgres://) or, locally, SQLite (sqlite:///path)")
        return parsed
    if not env_bool("USE_POSTGRES", False):
        return sqlite_database(var_dir)
    refuse_placeholder("POSTGRES_PASSWORD", env_str("POSTGRES_PASSWORD"))
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": env_str("POSTGRES_DB", "devops_db"),
        "USER": env_str("POSTGRES_USER", "devops_user"),
        "PASSWORD": env_str("POSTGRES_PASSWORD", "devops_pass"),
        "HOST": env_str("POSTGRES_HOST", "localhost"),
        "PORT": env_str("POSTGRES_PORT", "5432"),
        "OPTIONS": postgres_options(keepalive),
        "CONN_MAX_AGE": conn_max_age,
        "CONN_HEALTH_CHECKS": True,
    }
