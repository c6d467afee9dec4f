"""URLs of the JSON API."""

from django.urls import path

from . import pages, views

urlpatterns = [
    path("cities/", views.city_list, name="api-city-list"),
    path("cities/<str:city_id>", views.city_detail, name="api-city-detail"),
    path("cities/<str:city_id>/refresh", views.refresh_city, name="api-city-refresh"),
    path("ops/queues", pages.ops_queues_json, name="api-ops-queues"),
    path("tasks/<str:task_id>", views.task_status, name="api-task-status"),
    path("etl/daily-summary", views.start_daily_summary, name="api-etl-daily-summary"),
]
