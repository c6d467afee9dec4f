"""Root URL configuration."""

from django.contrib import admin
from django.urls import include, path

from weather import health, pages

urlpatterns = [
    path("", pages.dashboard, name="dashboard"),
    path("cities/<str:city_id>/refresh", pages.dashboard_refresh, name="dashboard-refresh"),
    path("ops/", pages.ops, name="ops"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", health.metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/", include("weather.urls")),
]
