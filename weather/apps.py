"""Django app configuration for the weather domain."""

from django.apps import AppConfig


class WeatherConfig(AppConfig):
    """The weather app."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "weather"

    def ready(self) -> None:
        """Connect the metrics signal handlers in every process (web, workers, beat)."""
        from . import instrumentation  # noqa: F401
