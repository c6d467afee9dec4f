"""The weather app's models, a module per concern; every model is importable from here."""

from .access import ApiKey
from .effects import Effect
from .execution import LaneSample, TaskAttempt
from .limits import ProviderQuota, QuotaGrant, RateWindow
from .readings import City, CityQuerySet, DailySummary, WeatherData, validate_finite
from .runs import DailySummaryRun, PendingFetch, RefreshBatch, RefreshRun
from .scheduling import BeatHeartbeat, BeatLease

__all__ = [
    "ApiKey",
    "BeatHeartbeat",
    "BeatLease",
    "City",
    "CityQuerySet",
    "DailySummary",
    "DailySummaryRun",
    "Effect",
    "LaneSample",
    "PendingFetch",
    "ProviderQuota",
    "QuotaGrant",
    "RateWindow",
    "RefreshBatch",
    "RefreshRun",
    "TaskAttempt",
    "WeatherData",
    "validate_finite",
]
