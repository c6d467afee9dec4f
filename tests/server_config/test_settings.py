"""Hardened defaults: production settings pass Django's deploy check; weak or unsafe ones refuse to start."""

import json
import os
import secrets
import subprocess
import sys

import pytest
from django.test import Client

from tools.harness import ROOT

BASE = {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "server_config.settings"}
STRONG_KEY = secrets.token_urlsafe(50)


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**BASE, **env}, timeout=60)


@pytest.mark.subprocess
def test_production_settings_pass_the_deploy_check_with_no_warning():
    done = manage("check", "--deploy", "--fail-level", "WARNING", SECRET_KEY=STRONG_KEY,
                  ALLOWED_HOSTS="weather.example.org")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "SECRET_KEY must be set"),
        ({"SECRET_KEY": "short-and-guessable"}, "SECRET_KEY is too weak"),
        ({"SECRET_KEY": "django-insecure-" + STRONG_KEY}, "SECRET_KEY is too weak"),
        ({"SECRET_KEY": "change-me-to-50-or-more-random-characters-from-secrets-token-urlsafe"},
         "SECRET_KEY still holds the .env.example placeholder"),
        ({"SECRET_KEY": STRONG_KEY, "ALLOWED_HOSTS": "weather.example.org", "USE_POSTGRES": "true",
          "POSTGRES_PASSWORD": "change-me"}, "POSTGRES_PASSWORD still holds the .env.example placeholder"),
        ({"SECRET_KEY": STRONG_KEY, "ALLOWED_HOSTS": "weather.example.org",
          "RABBITMQ_URL": "amqp://f_brain:change-me@rabbitmq:5672/"}, "password still holds the .env.example"),
        ({"SECRET_KEY": STRONG_KEY}, "ALLOWED_HOSTS must list"),
        ({"SECRET_KEY": STRONG_KEY, "ALLOWED_HOSTS": "weather.example.org",
          "RABBITMQ_URL": "amqp://guest:guest@rabbitmq:5672/"}, "guest account"),
    ],
)
@pytest.mark.subprocess
def test_unsafe_production_settings_refuse_to_start(env, message):
    done = manage("check", **env)
    assert done.returncode != 0
    assert message in done.stderr


def test_every_serializer_is_json_only():
    from django.conf import settings

    assert settings.CELERY_ACCEPT_CONTENT == ["application/json"]
    assert settings.CELERY_RESULT_ACCEPT_CONTENT == ["application/json"]
    assert settings.CELERY_TASK_SERIALIZER == settings.CELERY_RESULT_SERIALIZER == "json"


def test_a_pickled_message_is_refused_by_the_app():
    from celery import current_app as app
    from kombu.exceptions import ContentDisallowed
    from kombu.serialization import loads

    with pytest.raises(ContentDisallowed):
        loads(b"\x80\x04K\x01.", "application/x-python-serialize", "binary", accept=app.conf.accept_content)


@pytest.mark.django_db
def test_metrics_are_closed_without_a_token_unless_explicitly_opened(settings):
    settings.DEBUG, settings.METRICS_TOKEN, settings.METRICS_OPEN = False, None, False
    closed = Client().get("/metrics", HTTP_HOST="anything.example")
    assert closed.status_code == 403
    assert "METRICS_TOKEN" in json.loads(closed.content)["error"]
    assert b"f_brain" not in closed.content
    settings.METRICS_OPEN = True
    assert Client().get("/metrics", HTTP_HOST="anything.example").status_code == 200


@pytest.mark.django_db
def test_metrics_token_is_enforced_when_set(settings):
    settings.METRICS_TOKEN = "s3cret-token"
    settings.METRICS_OPEN = True  # a token set is required even so
    assert Client().get("/metrics").status_code == 401
    wrong = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer nope")
    assert wrong.status_code == 401
    assert "bearer" in json.loads(wrong.content)["error"]
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token").status_code == 200


@pytest.mark.django_db
def test_probes_answer_plain_http_with_any_host_under_production_settings(settings, monkeypatch):
    # Production HTTPS settings: everything else redirects or refuses the host, the probes must not.
    settings.SECURE_SSL_REDIRECT = True
    settings.ALLOWED_HOSTS = ["weather.example.org"]
    probe = Client().get("/healthz", HTTP_HOST="10.0.0.5:8000")
    assert probe.status_code == 200
    assert probe.json() == {"status": "ok"}
    ready = Client().get("/readyz", HTTP_HOST="web:8000")
    assert ready.status_code == 200, ready.content
    assert ready.json()["checks"] == {"database": "ok", "broker": "ok"}
    settings.METRICS_OPEN = True
    scrape = Client().get("/metrics", HTTP_HOST="web:8000")
    assert scrape.status_code == 200
    assert b"f_brain_broker_up" in scrape.content
    head = Client().head("/readyz", HTTP_HOST="web:8000")
    assert (head.status_code, head.content) == (200, b"")
    # The token still guards /metrics, and nothing else skips the checks.
    settings.METRICS_TOKEN = "s3cret-token"
    assert Client().get("/metrics", HTTP_HOST="web:8000").status_code == 401
    assert Client().get("/", HTTP_HOST="weather.example.org").status_code == 301
    assert Client().get("/api/cities/", HTTP_HOST="web:8000", secure=True).status_code == 400
    assert Client().get("/readyz/x", HTTP_HOST="web:8000").status_code == 400
    assert Client().post("/healthz", HTTP_HOST="weather.example.org", secure=True).status_code == 405


@pytest.mark.django_db
def test_admin_needs_authentication():
    response = Client().get("/admin/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


@pytest.mark.django_db
def test_a_page_with_a_csrf_token_is_private_and_its_cookie_is_out_of_scripts_reach():
    for path in ("/", "/admin/login/"):
        response = Client().get(path)
        assert response.status_code == 200, path
        assert 'name="csrfmiddlewaretoken"' in response.content.decode(), path
        assert "private" in response["Cache-Control"], path
        assert response.cookies["csrftoken"]["httponly"] is True, path
    # A public answer without cookies stays cacheable by anyone.
    assert "private" not in Client().get("/api/cities/").get("Cache-Control", "")


@pytest.mark.subprocess
def test_importing_the_settings_creates_nothing_and_the_local_folders_appear_on_first_use(tmp_path):
    var = tmp_path / "var"
    probe = (
        "import os, sys, django\n"
        "var = sys.argv[1]\n"
        "django.setup()\n"
        "from django.conf import settings\n"
        "settings.INSTALLED_APPS\n"
        "assert not os.path.exists(var), 'made at import: ' + str(os.listdir(var))\n"
        "from celery import current_app\n"
        "current_app.connection_for_write()\n"
        "assert sorted(os.listdir(os.path.join(var, 'broker'))) == ['control', 'messages', 'processed']\n"
        "from django.db import connection\n"
        "connection.ensure_connection()\n"
        "assert os.path.exists(os.path.join(var, 'db.sqlite3'))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe, str(var)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={**BASE, "DEBUG": "true", "VAR_DIR": str(var),
                                           "CELERY_BROKER_URL": "filesystem://"})
    assert done.returncode == 0, done.stderr[-2000:]
