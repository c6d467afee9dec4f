"""Django settings for F_BRAIN, read from the environment (see .env.example)."""

from __future__ import annotations

import socket
from datetime import timedelta
from urllib.parse import urlsplit

from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

import routing
from envvars import env_bool, env_float, env_int, env_list, env_str
from routing import broker as routing_broker
from weather import provider, schedules
from workers.pools import current_pool

from . import backing, logsetup, paths

BASE_DIR = paths.BASE_DIR
VAR_DIR = paths.var_dir()

# --- Core -------------------------------------------------------------------
DEBUG = env_bool("DEBUG", False)
# What .env.example holds where a secret belongs: copied unchanged, it must not start.
PLACEHOLDER_SECRET = "change-me"


def refuse_placeholder(name: str, value: str | None) -> None:
    """Outside development, refuse a secret still set to the .env.example placeholder."""
    if not DEBUG and value and PLACEHOLDER_SECRET in value.lower():
        raise ImproperlyConfigured(f"{name} still holds the .env.example placeholder: set a real secret")


SECRET_KEY = env_str("SECRET_KEY")
refuse_placeholder("SECRET_KEY", SECRET_KEY)
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "django-insecure-local-development-only"
elif not DEBUG and (len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5 or SECRET_KEY.startswith("django-insecure")):
    raise ImproperlyConfigured(
        "SECRET_KEY is too weak for DEBUG off: use 50+ random characters, e.g. "
        "python -c 'import secrets; print(secrets.token_urlsafe(50))'"
    )
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
if not DEBUG and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must list the served host names when DEBUG is off")

# HTTPS: on by default outside development (redirect, HSTS, secure cookies);
# behind a TLS-terminating proxy set SECURE_PROXY_SSL_HEADER=true so Django
# trusts its X-Forwarded-Proto.
SECURE_HTTPS = env_bool("SECURE_HTTPS", not DEBUG)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", SECURE_HTTPS)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("SECURE_PROXY_SSL_HEADER") else None
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000 if SECURE_HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HTTPS
SECURE_HSTS_PRELOAD = SECURE_HTTPS
SESSION_COOKIE_SECURE = SECURE_HTTPS
CSRF_COOKIE_SECURE = SECURE_HTTPS
SESSION_COOKIE_HTTPONLY = True
# The dashboard's script reads the CSRF token from the page, never from the cookie.
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
# /metrics names hosts, tasks, queue depths and every doctor finding. With DEBUG off it answers only
# scrapers that send METRICS_TOKEN as a bearer token; without a token it is closed (403), unless
# METRICS_OPEN=true says the web role is reachable from a private network only.
METRICS_TOKEN = env_str("METRICS_TOKEN")
METRICS_OPEN = env_bool("METRICS_OPEN", False)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_results",
    "django_celery_beat",
    # Listed so /api/docs is rendered with the package's own Swagger UI files, not a CDN's.
    "ninja",
    # Failed logins counted per client and per username; lockouts listed in the admin and on /ops/.
    "axes",
    "weather",
]

MIDDLEWARE = [
    # Outermost: every response, probes included, carries a request id and gets one access line.
    "weather.requestlog.RequestContextMiddleware",
    # HEAD answers carry the GET's headers and no body, whatever the server under us does.
    "weather.middleware.HeadWithoutBodyMiddleware",
    "weather.ops.middleware.ProbeMiddleware",  # first: probes skip host checks and the HTTPS redirect
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    # Static files straight after the security headers, before sessions and CSRF do any work.
    # WhiteNoise, with the manifest and source maps kept from clients (server_config/static.py).
    "server_config.static.BuildFilesHiddenWhiteNoise",
    # Before anything reads request.GET or request.POST (CSRF does, for POSTs).
    "weather.middleware.CharsetGuardMiddleware",
    "weather.api.middleware.JsonApiErrorsMiddleware",
    # Outside sessions and CSRF: an answer that sets their cookies is marked private.
    "weather.middleware.PrivateWhenPersonalMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes requires: it answers a locked-out login before the view runs.
    "axes.middleware.AxesMiddleware",
]

# Every HTML page: scripts and styles from this site's own files only (the dashboard's
# script and the pages' stylesheet are static files), nothing framed, no plugins.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

# Password guessing: after LOGIN_FAILURE_LIMIT failures of one username from one client address,
# that address is locked out of that username for LOGIN_LOCKOUT_MINUTES (or until
# `manage.py axes_reset_ip_username <address> <name>`). Counted per pair, so a stranger guessing
# a staff account's password locks out only themselves, never the account everywhere. A correct
# password does not get through a lockout.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["ip_address", "username"]]
# The same client address as the rate limit: behind NUM_TRUSTED_PROXIES proxies, the one they saw.
AXES_CLIENT_IP_CALLABLE = "weather.http.login_client_address"
AXES_RESET_ON_SUCCESS = True

ROOT_URLCONF = "server_config.urls"
WSGI_APPLICATION = "server_config.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# A peer that vanishes (a host cut off, a broker or database gone without closing):
# probe an idle connection after KEEPALIVE_IDLE_S, then every KEEPALIVE_INTERVAL_S, and
# give up after KEEPALIVE_PROBES unanswered probes (found dead within 25 s), for the
# database and the broker alike.
KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, KEEPALIVE_PROBES = 10, 5, 3

# --- Database -----------------------------------------------------------------
# DATABASE_URL (a PaaS's add-on) wins; else POSTGRES_* with USE_POSTGRES=true; else SQLite under
# VAR_DIR (server_config/backing.py). Connections are kept CONN_MAX_AGE (POSTGRES_CONN_MAX_AGE).
DATABASES = {"default": backing.database(VAR_DIR, (KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, KEEPALIVE_PROBES),
                                         refuse_placeholder)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = paths.static_root()
# Served by WhiteNoise in every run mode (the production web server included): compressed, with
# content-hashed names cached for a year. `collectstatic` fills STATIC_ROOT first
# (Dockerfile, scripts/run, the release step, scripts/test).
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# LOG_FORMAT=text|json and LOG_LEVEL, alike in the web server, the app, pools and beat: each line
# carries the request id and the task's id, name, lane and retry (server_config/logsetup.py).
LOGGING_CONFIG = "server_config.logsetup.configure"
LOGGING = logsetup.from_environment()

# Refresh requests a client may make per minute (all web processes together).
REFRESH_RATE_LIMIT_PER_MINUTE = env_int("REFRESH_RATE_LIMIT_PER_MINUTE", 30, minimum=1)
# The span that limit counts over, sliding (60: a minute; tests shorten it to cross a boundary quickly).
REFRESH_RATE_WINDOW_SECONDS = env_int("REFRESH_RATE_WINDOW_SECONDS", 60, minimum=1)
# Proxies in front of the web process that append to X-Forwarded-For (0: trust none).
NUM_TRUSTED_PROXIES = env_int("NUM_TRUSTED_PROXIES", 0, minimum=0)

# --- Weather provider -----------------------------------------------------------
WEATHER_API_URL = env_str("WEATHER_API_URL", "https://api.open-meteo.com/v1/forecast")
# The provider accepts at most MAX_LOCATIONS_PER_REQUEST a request; 200 keeps the GET URL near
# 5 KB (about 23 encoded characters a location), well under common 8 KB limits.
WEATHER_BATCH_SIZE = env_int("WEATHER_BATCH_SIZE", 200, minimum=1, maximum=provider.MAX_LOCATIONS_PER_REQUEST)
WEATHER_CONNECT_TIMEOUT = env_float("WEATHER_CONNECT_TIMEOUT", 3.05, minimum=0.1)
WEATHER_READ_TIMEOUT = env_float("WEATHER_READ_TIMEOUT", 10.0, minimum=0.1)
WEATHER_RETENTION_DAYS = env_int("WEATHER_RETENTION_DAYS", 30, minimum=1)
# Rows per delete transaction in the cleanup: small enough that no statement holds
# locks for long (5,000 readings delete in ~30 ms here), large enough to keep up.
WEATHER_CLEANUP_BATCH_SIZE = env_int("WEATHER_CLEANUP_BATCH_SIZE", 5000, minimum=1)
# First retry delay; each further retry doubles it (with jitter), unless the
# provider says when to come back.
WEATHER_RETRY_BASE_SECONDS = env_float("WEATHER_RETRY_BASE_SECONDS", 2.0, minimum=0.0)

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

# --- Celery -------------------------------------------------------------------
# One URL, or a cluster's nodes separated by ";" (Celery fails over between them in turn), from
# CELERY_BROKER_URL, RABBITMQ_URL, CLOUDAMQP_URL or AMQP_URL, the first set (server_config/backing.py).
CELERY_BROKER_URL = backing.broker_url()
if not DEBUG:
    for _node in CELERY_BROKER_URL.split(";"):
        _broker = urlsplit(_node.strip())
        # RabbitMQ's guest account is for local development; anywhere else it is a
        # well-known password (RabbitMQ itself refuses guest from other hosts).
        if _broker.username == "guest" and _broker.hostname not in ("localhost", "127.0.0.1", "::1"):
            raise ImproperlyConfigured("the broker URL uses the guest account on a non-local host: "
                                       "set real credentials")
        refuse_placeholder("the broker URL's password", _broker.password)
# django-celery-results, surviving a database outage while a worker reconnects (weather/results.py).
CELERY_RESULT_BACKEND = "weather.results:ResilientDatabaseBackend"
CELERY_RESULT_EXTENDED = True  # keep task name, args and worker with each result
CELERY_ACCEPT_CONTENT = ["application/json"]
CELERY_RESULT_ACCEPT_CONTENT = ["application/json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TIMEZONE = TIME_ZONE
CELERY_ENABLE_UTC = True
CELERY_TASK_TRACK_STARTED = True
# Task events, for Flower's task list and timeline: workers send each task's received, started and
# outcome, publishers its sent. One setting turns them on wherever Flower runs (the compose
# monitoring profile); bench/task_cost.py measures what they cost a task.
TASK_EVENTS = env_bool("TASK_EVENTS", False)
CELERY_WORKER_SEND_TASK_EVENTS = CELERY_TASK_SEND_SENT_EVENT = TASK_EVENTS
# Celery's Django fixup closes the database connections around every task unless this
# many tasks have not yet run: out of reach, so CONN_MAX_AGE decides (server_config/celery.py).
CELERY_DB_REUSE_MAX = 2**62
CELERY_RESULT_EXPIRES = timedelta(days=env_int("CELERY_RESULT_EXPIRES_DAYS", 7, minimum=1))

# Topology: derived from `routing`, never repeated here. The broker generation decides the
# queue types (routing/generations.py); every process of a deployment must state the same one,
# and the pools, `topology --check` and doctor refuse a broker of another generation.
RABBITMQ_GENERATION = routing.BrokerGeneration(env_int(
    "RABBITMQ_GENERATION", int(routing.DEFAULT_GENERATION),
    minimum=min(routing.BrokerGeneration), maximum=max(routing.BrokerGeneration)))
CELERY_BROKER_GENERATION = int(RABBITMQ_GENERATION)
_TOPOLOGY = routing.topology(RABBITMQ_GENERATION)
CELERY_TASK_QUEUES = _TOPOLOGY.lane_queues
CELERY_TASK_ROUTES = (routing.route_task,)
CELERY_TASK_CREATE_MISSING_QUEUES = False
# Quorum lanes (routing/generations.py): Celery then consumes with per-consumer prefetch
# (quorum queues refuse global QoS) and sends countdowns and ETAs through its native
# delayed delivery, whose delay queues are quorum queues too.
CELERY_WORKER_DETECT_QUORUM_QUEUES = True
CELERY_BROKER_NATIVE_DELAYED_DELIVERY_QUEUE_TYPE = str(routing.QueueType.QUORUM)
# Celery's consumer, with delayed delivery set up through the live node only (workers/consumer.py).
CELERY_WORKER_CONSUMER = "workers.consumer:LaneConsumer"
# Celery wants a default queue object to exist; the router decides every message's
# lane (or raises), so this is never used to route anything.
CELERY_TASK_DEFAULT_QUEUE = routing.BULK.name
CELERY_TASK_DEFAULT_EXCHANGE = routing.TASK_EXCHANGE.name
CELERY_TASK_DEFAULT_EXCHANGE_TYPE = routing.TASK_EXCHANGE.type
CELERY_TASK_DEFAULT_PRIORITY = int(routing.Priority.API)

# Publishing: persistent messages, confirmed by the broker, a bounded retry so a
# request answers 503 quickly instead of hanging while the broker is away.
CELERY_BROKER_CONNECTION_TIMEOUT = env_float("CELERY_BROKER_CONNECTION_TIMEOUT", 2.0, minimum=0.1)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A worker host that vanishes (power, network) goes silent. RabbitMQ closes its
# connection once it has missed the worker's heartbeats and requeues every message the
# host held unacknowledged, for a replica elsewhere, within BROKER_FAILURE_DETECTION_S
# (measured 29.5 s at the default 10 s heartbeat).
# Celery's default heartbeat (120 s) left that at minutes. Only a worker's consumer loop sends heartbeats, so other
# processes (web, beat) ask for none: the broker would drop their idle publisher
# connections for silence. TCP keepalive finds a dead peer for every process alike.
BROKER_HEARTBEAT_S = env_int("BROKER_HEARTBEAT_S", 10, minimum=2)
BROKER_FAILURE_DETECTION_S = routing_broker.failure_detection_bound(BROKER_HEARTBEAT_S)
CELERY_BROKER_HEARTBEAT = BROKER_HEARTBEAT_S if current_pool() else 0
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "confirm_publish": True,
    # RabbitMQ's flow control (a memory or disk alarm): remembered per process, so
    # a request answers 503 at once instead of waiting for a confirm that cannot come.
    "on_blocked": routing_broker.note_blocked,
    "on_unblocked": routing_broker.note_unblocked,
    "socket_settings": {
        socket.TCP_KEEPIDLE: KEEPALIVE_IDLE_S,
        socket.TCP_KEEPINTVL: KEEPALIVE_INTERVAL_S,
        socket.TCP_KEEPCNT: KEEPALIVE_PROBES,
    },
}
if not current_pool():
    # A web request, beat or a command waits this long at most for any one reply. On a
    # cluster that lost its majority, closing a channel whose publish went unconfirmed
    # waited ~65 s for the broker (measured), far past any client; with this bound the
    # API answers 503 in about a second plus this. A pool's consumer reads from its event
    # loop and is watched by heartbeats instead.
    CELERY_BROKER_TRANSPORT_OPTIONS |= {"read_timeout": routing_broker.CONNECT_TIMEOUT_S,
                                        "write_timeout": routing_broker.CONNECT_TIMEOUT_S}
if CELERY_BROKER_URL.startswith("filesystem://"):
    # Local fallback when no RabbitMQ answers (scripts/run says so loudly): one
    # folder for messages, one for the exchange -> queue table shared by all
    # processes. Lanes and pools stay separate; broker priorities do not apply.
    _BROKER_DIR = VAR_DIR / "broker"
    for _folder in ("messages", "control", "processed"):
        (_BROKER_DIR / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_BROKER_DIR / "messages"),
        "data_folder_out": str(_BROKER_DIR / "messages"),
        "control_folder": str(_BROKER_DIR / "control"),
        "processed_folder": str(_BROKER_DIR / "processed"),
    }
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 1,
}

# Worker behaviour: derived from the pool this process runs as (see workers/pools.py).
_POOL = current_pool()
if _POOL is not None:
    # A pool knows only its own lanes' queues. On a cluster the classic interactive queue
    # lives on one node; while that node is down, a bulk worker that knew it would fail
    # to bind it for delayed delivery on every reconnect and never consume again. Pools
    # publish only to their own lanes (routing.routes), so nothing else is needed here.
    CELERY_TASK_QUEUES = tuple(queue for queue in _TOPOLOGY.lane_queues if queue.name in _POOL.queues)
    # Celery looks its default queue up among these before routing even a retry.
    CELERY_TASK_DEFAULT_QUEUE = CELERY_TASK_QUEUES[0].name
    CELERY_TASK_ACKS_LATE = _POOL.acks_late
    CELERY_TASK_REJECT_ON_WORKER_LOST = _POOL.reject_on_worker_lost
    CELERY_WORKER_PREFETCH_MULTIPLIER = _POOL.prefetch_multiplier
    # No soft shutdown, and SIGTERM is not remapped to SIGQUIT: Celery's soft shutdown
    # sleeps its whole timeout inside the signal handler, so its event loop stops. Tasks
    # that finish meanwhile cannot be acked and run again elsewhere, the broker drops the
    # silent connection, the worker reconnects and takes new work while it is dying, and
    # `docker stop` ends in SIGKILL (seen on the compose stack). SIGTERM is Celery's warm
    # shutdown: no new work, running tasks finish and are acked, then it exits; the
    # platform's stop grace (above the pool's drain_seconds) bounds the wait.
    CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT = 0
    # The same limits the launcher passes on the command line, readable by tasks
    # that pace themselves (the cleanup stops before its soft limit).
    CELERY_TASK_SOFT_TIME_LIMIT = _POOL.soft_time_limit
    CELERY_TASK_TIME_LIMIT = _POOL.time_limit
    # A task that failed for good is rejected, not acked, so RabbitMQ moves it to
    # the dead-letter queue where it can be inspected and replayed.
    # (Celery 5.7 splits its acks_on_failure_or_timeout into these two.)
    CELERY_TASK_ACKS_ON_FAILURE = CELERY_TASK_ACKS_ON_TIMEOUT = not _POOL.acks_late
    # If the broker connection drops, the unacked message is redelivered anyway;
    # cancelling the running copy avoids two copies running at once.
    CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = _POOL.acks_late

# A message whose run was cut short this many times (its worker process died) is
# rejected into the dead-letter queue instead of crashing workers forever.
TASK_MAX_CRASHES = env_int("TASK_MAX_CRASHES", 3, minimum=1)

# Beat: schedules live in the database (editable in the admin); weather/schedules.py seeds it.
CELERY_BEAT_SCHEDULER = "weather.beat:SeedingDatabaseScheduler"
CELERY_BEAT_SCHEDULE = schedules.beat_schedule()
# Any number of beats may run; the one holding this lease sends, a standby takes
# over once the leader has missed renewing it this long (weather/beat.py).
BEAT_LEASE_SECONDS = env_int("BEAT_LEASE_SECONDS", 15, minimum=2)
# A beat wakes at least this often (to renew its lease); each sent entry's next
# run is written at once, so a new leader does not send the same slot again.
CELERY_BEAT_MAX_LOOP_INTERVAL = max(1, BEAT_LEASE_SECONDS // 3)
CELERY_BEAT_SYNC_EVERY = 1
