"""Celery on RabbitMQ: the broker and result backend, the topology from `routing`, publishing, beat.

What differs for a worker of a pool is in worker.py, applied over these.
"""

from __future__ import annotations

import socket
from datetime import timedelta
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

import routing
from envvars import env_bool, env_float, env_int, env_str
from routing import broker as routing_broker
from weather import schedules

from .. import backing
from .core import DEBUG, TIME_ZONE, VAR_DIR, refuse_placeholder
from .database import KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, KEEPALIVE_PROBES

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
# Django's Tasks API on the same lanes: each Django task is a Celery task named by its module
# path, registered in every process that imports the module (the pools import these).
TASKS = {"default": {"BACKEND": "weather.lanetasks.backend.LaneBackend"}}
CELERY_IMPORTS = ("weather.jobs",)
# Which API the views enqueue a fetch and a daily summary through: Celery's (`.apply_async`) or
# Django's Tasks API (weather/jobs.py). The same lanes, pools and answers either way.
ENQUEUE_THROUGH = env_str("ENQUEUE_THROUGH", "celery")
if ENQUEUE_THROUGH not in ("celery", "django"):
    raise ImproperlyConfigured(f"ENQUEUE_THROUGH must be 'celery' or 'django', not {ENQUEUE_THROUGH!r}")

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
if CELERY_BROKER_URL.startswith("filesystem://"):
    # Local fallback when no RabbitMQ answers (scripts/run says so loudly): one
    # folder for messages, one for the exchange -> queue table shared by all
    # processes. Lanes and pools stay separate; broker priorities do not apply.
    # The folders are made when the Celery app first reads this (server_config/celery.py), not here.
    _BROKER_DIR = VAR_DIR / "broker"
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
