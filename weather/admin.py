"""Admin pages for cities, readings, summaries, API keys and the effects ledger."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from .apikeys import revoke, set_new_secret
from .models import ApiKey, City, DailySummary, Effect, WeatherData


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


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """API keys: created here (the key is shown once), revoked here; only a hash is stored."""

    list_display = ("name", "prefix", "rate_limit_per_minute", "created_at", "last_used_at", "revoked_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    search_fields = ("name", "prefix")
    readonly_fields = ("prefix", "created_at", "last_used_at", "revoked_at")
    actions = ("revoke_keys",)

    def save_model(self, request: HttpRequest, obj: ApiKey, form: object, change: bool) -> None:
        """A new key gets its secret here and the admin shows it once; it cannot be read again."""
        if not change:
            key = set_new_secret(obj)
            messages.warning(request, f"The API key for {obj.name!r} is {key} - copy it now: it is stored only "
                                      "as a hash and will not be shown again.")
        super().save_model(request, obj, form, change)

    @admin.action(description="Revoke the selected API keys")
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        """Refuse these keys from now on (kept for the record, never deleted)."""
        for row in queryset:
            revoke(row)
        messages.success(request, f"Revoked {queryset.count()} key(s).")


@admin.register(Effect)
class EffectAdmin(admin.ModelAdmin):
    """The effects ledger, read only: which execution applied or discarded each unit of work (doctor names units)."""

    list_display = ("kind", "unit", "applied", "task_name", "task_id", "attempt", "delivery", "host", "pid",
                    "recorded_at")
    list_filter = ("kind", "applied")
    # Exact matches: doctor names a unit, a task id comes from a result; a substring scan of a week is slow.
    search_fields = ("=unit", "=task_id")
    date_hierarchy = "recorded_at"
    show_full_result_count = False  # a count of the whole ledger on every page is a scan

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Effect | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Effect | None = None) -> bool:
        return False
