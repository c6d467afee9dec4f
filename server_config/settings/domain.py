"""The weather domain's settings: the provider, its quota, batches, retries, retention and the refresh rate limit.

Defaults come from declarations only: the provider's published limits (weather/provider.py)
and the periodic work (weather/schedules.py).
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from envvars import env_bool, env_float, env_int, env_str
from weather import provider, schedules

# Refresh requests a client may make per minute (all web processes together).
REFRESH_RATE_LIMIT_PER_MINUTE = env_int("REFRESH_RATE_LIMIT_PER_MINUTE", 30, minimum=1)
# The span that limit counts over, sliding (60: a minute; tests shorten it to cross a boundary quickly).
REFRESH_RATE_WINDOW_SECONDS = env_int("REFRESH_RATE_WINDOW_SECONDS", 60, minimum=1)
# Proxies in front of the web process that append to X-Forwarded-For (0: trust none).
NUM_TRUSTED_PROXIES = env_int("NUM_TRUSTED_PROXIES", 0, minimum=0)

WEATHER_API_URL = env_str("WEATHER_API_URL", "https://api.open-meteo.com/v1/forecast")
# The provider accepts at most MAX_LOCATIONS_PER_REQUEST a request; 200 keeps the GET URL near
# 5 KB (about 23 encoded characters a location), well under common 8 KB limits.
WEATHER_BATCH_SIZE = env_int("WEATHER_BATCH_SIZE", 200, minimum=1, maximum=provider.MAX_LOCATIONS_PER_REQUEST)
WEATHER_CONNECT_TIMEOUT = env_float("WEATHER_CONNECT_TIMEOUT", 3.05, minimum=0.1)
WEATHER_READ_TIMEOUT = env_float("WEATHER_READ_TIMEOUT", 10.0, minimum=0.1)
WEATHER_RETENTION_DAYS = env_int("WEATHER_RETENTION_DAYS", 30, minimum=1)
# The effects ledger (weather/effects.py): a row for each reading, batch, run and summary written, in
# the work's own transaction, so a checker can count a unit applied twice. About one row a reading:
# kept a week by default, for the history a checker or an operator reads; off drops it and its transaction.
EFFECTS_LEDGER = env_bool("EFFECTS_LEDGER", True)
EFFECTS_RETENTION_DAYS = env_int("EFFECTS_RETENTION_DAYS", 7, minimum=1)
# Rows per delete transaction in the cleanup: small enough that no statement holds
# locks for long (5,000 readings delete in ~30 ms here), large enough to keep up.
WEATHER_CLEANUP_BATCH_SIZE = env_int("WEATHER_CLEANUP_BATCH_SIZE", 5000, minimum=1)
# First retry delay; each further retry doubles it (with jitter), unless the
# provider says when to come back.
WEATHER_RETRY_BASE_SECONDS = env_float("WEATHER_RETRY_BASE_SECONDS", 2.0, minimum=0.0)

# A person's fetch refused for quota waits for it (a retry with a countdown) when it returns
# within this many seconds; later than that, the refusal says when it returns.
WEATHER_INTERACTIVE_QUOTA_WAIT_SECONDS = env_float("WEATHER_INTERACTIVE_QUOTA_WAIT_SECONDS", 5.0, minimum=0.0)

# Provider quota in locations (Open-Meteo free tier: 600/min, 5,000/h, 10,000/day);
# 0 lifts a limit. The reserve is the share of each window only interactive may use.
WEATHER_QUOTA_PER_MINUTE = env_int("WEATHER_QUOTA_PER_MINUTE", provider.FREE_TIER_LOCATIONS_PER_MINUTE, minimum=0)
WEATHER_QUOTA_PER_HOUR = env_int("WEATHER_QUOTA_PER_HOUR", provider.FREE_TIER_LOCATIONS_PER_HOUR, minimum=0)
WEATHER_QUOTA_PER_DAY = env_int("WEATHER_QUOTA_PER_DAY", provider.FREE_TIER_LOCATIONS_PER_DAY, minimum=0)
WEATHER_QUOTA_INTERACTIVE_RESERVE = env_float("WEATHER_QUOTA_INTERACTIVE_RESERVE", 0.1, minimum=0.0)
if WEATHER_QUOTA_INTERACTIVE_RESERVE >= 1:
    raise ImproperlyConfigured("WEATHER_QUOTA_INTERACTIVE_RESERVE is a share below 1 (e.g. 0.1)")
# A bulk batch waiting for quota gives up once its refresh run is this old: the
# next scheduled run will cover its cities anyway.
WEATHER_REFRESH_DEADLINE_SECONDS = env_int("WEATHER_REFRESH_DEADLINE_SECONDS",
                                           int(schedules.REFRESH_EXPIRES.total_seconds()), minimum=60)
