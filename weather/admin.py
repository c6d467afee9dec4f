"""Admin pages for cities, readings and summaries."""

from django.contrib import admin

from .models import City, DailySummary, WeatherData


@admin.register(City)
class CityAdmin(admin.ModelAdmin):
    """Cities, searchable by name and country."""

    list_display = ("name", "country_code", "latitude", "longitude", "population", "is_active")
    list_filter = ("is_active", "country_code")
    search_fields = ("name", "country_code")


@admin.register(WeatherData)
class WeatherDataAdmin(admin.ModelAdmin):
    """Readings, newest first."""

    list_display = ("city", "temperature", "humidity", "pressure", "observed_at", "fetched_at")
    list_select_related = ("city",)
    raw_id_fields = ("city",)
    date_hierarchy = "observed_at"


@admin.register(DailySummary)
class DailySummaryAdmin(admin.ModelAdmin):
    """Daily per-city summaries."""

    list_display = ("city", "day", "min_temperature", "max_temperature", "mean_temperature", "readings_count")
    list_select_related = ("city",)
    raw_id_fields = ("city",)
