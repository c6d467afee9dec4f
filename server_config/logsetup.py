"""The one logging configuration of every process (web server, app, pools, beat): text, or one JSON object a line."""

from __future__ import annotations

import logging
import logging.config

from django.core.exceptions import ImproperlyConfigured

from envvars import env_str

LOG_FORMATS = ("text", "json")


def logging_config(log_format: str, level: str) -> dict:
    """A dictConfig for `log_format` ("text" or "json") at `level`, with the request and task fields on each record.

    In JSON the fields are keys of their own (null where they do not apply); in
    text they are appended where set, so a person can still grep a task id.
    """
    if log_format not in LOG_FORMATS:
        raise ImproperlyConfigured(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    formatters = {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            # The request and task fields follow as the record's extra attributes, set by the context filter.
            "fmt": ["levelname", "name", "process", "message"],
            "rename_fields": {"levelname": "level", "name": "logger"},
            "timestamp": "time",
        },
        "text": {
            "()": "weather.logcontext.TextFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s",
        },
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "context": {"()": "weather.logcontext.ContextFilter"},
            "short_security": {"()": "weather.logcontext.ShortSecurityLines"},
        },
        "formatters": {log_format: formatters[log_format]},
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": log_format,
                        "filters": ["context", "short_security"]},
        },
        "root": {"handlers": ["console"], "level": level},
        # The web server's own loggers (granian applies this dict too) go through the same handler.
        "loggers": {
            "_granian": {"level": level},
            # django-axes announces itself on every start of every process, manage.py commands included.
            "axes.apps": {"level": "WARNING"},
        },
    }


def from_environment() -> dict:
    """The configuration LOG_FORMAT and LOG_LEVEL ask for: settings.LOGGING, and the web server's own loggers."""
    return logging_config(env_str("LOG_FORMAT", "text"), env_str("LOG_LEVEL", "INFO").upper())


def configure(config: dict) -> None:
    """Apply a configuration (Django's LOGGING_CONFIG; the pools and beat instead of Celery's own set-up).

    Python warnings become log records too, so no process writes a line that is not in the format.
    """
    logging.config.dictConfig(config)
    logging.captureWarnings(True)
