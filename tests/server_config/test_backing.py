"""The database and the broker from the environment: a PaaS's URLs win, in a stated order."""

from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from server_config import backing

KEEPALIVE = (10, 5, 3)
BACKING_VARIABLES = ("DATABASE_URL", "USE_POSTGRES", "POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD",
                     "POSTGRES_HOST", "POSTGRES_PORT", "POSTGRES_CONN_MAX_AGE", *backing.BROKER_URL_VARIABLES)


def refuse(name, value):
    if value and "change-me" in value:
        raise ImproperlyConfigured(f"{name} still holds the .env.example placeholder")


@pytest.fixture
def clean_env(monkeypatch):
    for name in BACKING_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_database_url_wins_over_postgres_variables_and_keeps_the_project_options(clean_env, tmp_path):
    clean_env.setenv("USE_POSTGRES", "true")
    clean_env.setenv("POSTGRES_HOST", "db")
    clean_env.setenv("POSTGRES_DB", "from_variables")
    clean_env.setenv("DATABASE_URL", "postgres://app:s3cret@pg.internal:6543/from_url?sslmode=require")
    default = backing.database(tmp_path, KEEPALIVE, refuse)
    assert default["ENGINE"] == "django.db.backends.postgresql"
    assert (default["HOST"], default["PORT"], default["NAME"]) == ("pg.internal", 6543, "from_url")
    assert (default["USER"], default["PASSWORD"]) == ("app", "s3cret")
    # The URL's own options are kept beside the project's keepalives and connect timeout.
    assert default["OPTIONS"]["sslmode"] == "require"
    assert default["OPTIONS"]["keepalives_idle"] == 10
    assert default["OPTIONS"]["connect_timeout"] == 5
    assert default["CONN_MAX_AGE"] == 300
    assert default["CONN_HEALTH_CHECKS"] is True


def test_postgres_variables_without_a_url(clean_env, tmp_path):
    clean_env.setenv("USE_POSTGRES", "true")
    clean_env.setenv("POSTGRES_HOST", "db")
    clean_env.setenv("POSTGRES_CONN_MAX_AGE", "0")
    default = backing.database(tmp_path, KEEPALIVE, refuse)
    assert (default["HOST"], default["CONN_MAX_AGE"]) == ("db", 0)


def test_sqlite_when_nothing_names_postgres(clean_env, tmp_path):
    default = backing.database(tmp_path / "var", KEEPALIVE, refuse)
    assert default["ENGINE"] == "server_config.sqlite"
    assert Path(default["NAME"]) == tmp_path / "var" / "db.sqlite3"


@pytest.mark.parametrize(("url", "message"), [
    ("mysql://u:p@h/db", "F_BRAIN runs on PostgreSQL"),
    ("gopher://h/db", "DATABASE_URL is not a database URL"),
    ("postgres://u:change-me@h/db", "DATABASE_URL's password still holds the .env.example placeholder"),
])
def test_a_database_url_we_cannot_run_on_is_a_clear_error(clean_env, tmp_path, url, message):
    clean_env.setenv("DATABASE_URL", url)
    with pytest.raises(ImproperlyConfigured, match=message):
        backing.database(tmp_path, KEEPALIVE, refuse)


def test_the_broker_comes_from_the_first_url_set_in_the_stated_order(clean_env):
    assert backing.broker_url() == backing.LOCAL_BROKER_URL
    for rank, name in reversed(list(enumerate(backing.BROKER_URL_VARIABLES))):
        clean_env.setenv(name, f"amqps://u:p@broker{rank}/vhost")
        assert backing.broker_url() == f"amqps://u:p@broker{rank}/vhost"
    # An empty variable (a PaaS that defines it blank) does not hide the next one.
    clean_env.setenv("CELERY_BROKER_URL", "")
    assert backing.broker_url() == "amqps://u:p@broker1/vhost"
