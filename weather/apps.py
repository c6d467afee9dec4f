"""Django app configuration for the weather domain."""

from django.apps import AppConfig


class WeatherConfig(AppConfig):
    """The weather app."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "weather"
