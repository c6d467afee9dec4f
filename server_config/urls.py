"""Root URL configuration: the dashboard, the operator surfaces, the admin and the JSON API."""

from django.contrib import admin
from django.urls import path

from weather.api.app import api
from weather.ops import health, metrics
from weather.ops import views as ops_views
from weather.ops.api import router as ops_router
from weather.web import views as web_views

# The operator's JSON view joins the API here, so the API and the operator code stay independent.
api.add_router("/ops/", ops_router)

urlpatterns = [
    path("", web_views.dashboard, name="dashboard"),
    path("cities/<str:city_id>/refresh", web_views.dashboard_refresh, name="dashboard-refresh"),
    path("ops/", ops_views.ops, name="ops"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/", api.urls),
]
