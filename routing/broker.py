"""The one reader of broker state: reachability, queue depth and consumers, with one "broker unavailable" error.

Every surface that asks the broker something (the ops page, `/api/ops/queues`,
`/metrics`, `/readyz`, `topology --check`, dead letters, the test harness) goes
through here, so a broker that is away reads the same everywhere: one exception,
raised within `CONNECT_TIMEOUT_S`, never a hang and never a library's own error.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from amqp.exceptions import AMQPError, NotFound, PreconditionFailed
from celery import current_app
from kombu import Connection
from kombu.exceptions import KombuError

from .generations import BrokerGeneration, Topology, deployed
from .lanes import TASK_EXCHANGE

# The ways talking to an absent or unhappy broker fails: kombu's connection errors
# (OperationalError is not an OSError), AMQP channel errors and plain socket errors.
BROKER_ERRORS: tuple[type[Exception], ...] = (KombuError, AMQPError, OSError)
# How long a request or a command waits for the broker (to connect, or for any one reply) before it
# says it is away.
CONNECT_TIMEOUT_S = 3.0


def failure_detection_bound(heartbeat_s: int) -> int:
    """Seconds within which RabbitMQ requeues what a vanished worker held, for a given heartbeat.

    RabbitMQ declares a silent peer dead after missing its heartbeats: 3 intervals
    after the cut, measured (tests/workers/test_multihost.py); one more of margin.
    """
    return 4 * heartbeat_s


class BrokerUnavailableError(RuntimeError):
    """The broker could not be reached, or did not accept what was asked of it."""


class BrokerBlockedError(BrokerUnavailableError):
    """The broker is up but blocks publishers (RabbitMQ's memory or disk alarm): safe to tell a client."""


@dataclass(frozen=True)
class QueueState:
    """What the broker says of one queue; `consumers` is None where the transport cannot tell."""

    name: str
    exists: bool
    messages: int = 0
    consumers: int | None = 0


def reports_consumers() -> bool:
    """Whether the configured transport counts consumers (RabbitMQ does; kombu's filesystem fallback does not)."""
    return current_app.connection_for_read().transport.driver_type == "amqp"


@contextlib.contextmanager
def unavailable_on_broker_errors(doing: str) -> Iterator[None]:
    """Turn the many ways a broker call fails into BrokerUnavailableError, saying what was being done."""
    try:
        yield
    except BROKER_ERRORS as error:
        raise BrokerUnavailableError(f"broker unavailable while {doing}: {error}") from error


def quick_retries() -> int:
    """Retries that try each configured node once: one quick reconnect for a single node, one per other node
    of a cluster (kombu moves to the next URL at each retry)."""
    return max(1, len(broker_nodes()) - 1)


def connect(connection: Any, timeout: float = CONNECT_TIMEOUT_S) -> Any:
    """Open `connection` with one quick try per node, so a caller answers "broker away" instead of hanging."""
    connection.ensure_connection(max_retries=quick_retries(), interval_start=0, interval_step=0, timeout=timeout)
    return connection


@contextlib.contextmanager
def broker_connection(*, write: bool = False) -> Iterator[Any]:
    """A connected connection of the current Celery app; BrokerUnavailableError if none can be had."""
    with unavailable_on_broker_errors("connecting"):
        pool_connection = current_app.connection_for_write() if write else current_app.connection_for_read()
    with pool_connection as connection:
        with unavailable_on_broker_errors("connecting"):
            connect(connection)
        with unavailable_on_broker_errors("talking to it"):
            yield connection


def queue_state(connection: Any, name: str) -> QueueState:
    """Depth and consumers of a queue by a passive declare (no management plugin needed)."""
    channel = connection.channel()
    try:
        _, messages, consumers = channel.queue_declare(queue=name, passive=True)
        return QueueState(name, True, messages, consumers if connection.transport.driver_type == "amqp" else None)
    except NotFound:
        return QueueState(name, False)
    finally:
        # A channel the broker closed (its 404 reply) is already gone.
        with contextlib.suppress(Exception):
            channel.close()


def broker_nodes() -> list[str]:
    """The configured broker URLs: one, or a cluster's nodes separated by ";" (tried in turn by Celery)."""
    return [url.strip() for url in str(current_app.conf.broker_url).split(";") if url.strip()]


def node_states(timeout: float = CONNECT_TIMEOUT_S) -> dict[str, str | None]:
    """Each configured node (its URL without the password) and why it cannot be reached, or None when it answers."""
    states: dict[str, str | None] = {}
    for url in broker_nodes():
        connection = Connection(url, connect_timeout=timeout)
        name = connection.as_uri()  # the password masked
        try:
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
            states[name] = None
        except BROKER_ERRORS as error:
            states[name] = f"{type(error).__name__}: {str(error)[:200]}"
        finally:
            with contextlib.suppress(Exception):
                connection.release()
    return states


def queue_states(names: Iterable[str] | None = None) -> dict[str, QueueState]:
    """Depth and consumers of these queues (default: every declared queue), read in one connection."""
    wanted = [queue.name for queue in deployed().all_queues] if names is None else list(names)
    with broker_connection() as connection:
        return {name: queue_state(connection, name) for name in wanted}


def broker_version(connection: Any) -> str | None:
    """The version the broker announced when `connection` opened, or None where the transport announces none."""
    properties = getattr(connection.connection, "server_properties", None) or {}
    version = properties.get("version")
    return version.decode() if isinstance(version, bytes) else version


def generation_mismatch(connection: Any) -> str | None:
    """Why the broker behind `connection` is not the generation this deployment states, or None when it is."""
    version = broker_version(connection)
    if version is None:
        return None  # not RabbitMQ (the local filesystem fallback): no queue types to disagree on
    stated = deployed().generation
    try:
        actual = BrokerGeneration.of_version(version)
    except ValueError as error:
        return str(error)
    if actual is stated:
        return None
    advice = (f"set RABBITMQ_GENERATION={actual.value}" if actual < stated else
              f"set RABBITMQ_GENERATION={actual.value}, stop the pools and run `manage.py topology --migrate` "
              "(the upgrade path in the README)")
    return f"the broker is RabbitMQ {version} but this deployment states RABBITMQ_GENERATION={stated.value}: {advice}"


def detect_generation() -> BrokerGeneration | None:
    """The generation of the broker this process is configured for; None where the transport is not RabbitMQ.

    Raises BrokerUnavailableError when it cannot be reached, ValueError for a series this topology does not know.
    """
    with broker_connection() as connection:
        version = broker_version(connection)
    return None if version is None else BrokerGeneration.of_version(version)


class BrokerGenerationError(RuntimeError):
    """The broker is another generation than the deployment states: queues would be declared wrongly."""


def ensure_generation(connection: Any) -> None:
    """Raise BrokerGenerationError when the broker behind `connection` is not the stated generation."""
    if problem := generation_mismatch(connection):
        raise BrokerGenerationError(problem)


def ensure_reachable() -> None:
    """Return when the broker accepts a connection; raise BrokerUnavailableError otherwise."""
    with broker_connection():
        pass


@dataclass(frozen=True)
class Mismatch:
    """An exchange or queue that exists on the broker with other settings than declared."""

    kind: str  # "exchange" or "queue"
    name: str
    detail: str


def _refused(connection: Any, declare: Any) -> str | None:
    """The broker's refusal of a declaration (PRECONDITION_FAILED), or None when it accepts it."""
    channel = connection.channel()
    try:
        declare(channel)
        return None
    except PreconditionFailed as error:
        return error.reply_text
    finally:
        # A channel the broker closed (its refusal) is already gone.
        with contextlib.suppress(Exception):
            channel.close()


def mismatches(connection: Any, topology: Topology | None = None) -> list[Mismatch]:
    """The task exchange and every existing queue whose live settings differ from the declaration (of the deployed
    generation unless another `topology` is given).

    A non-passive declare with the declared settings fails with PRECONDITION_FAILED
    when the live object was created differently; a missing queue is no mismatch.
    """
    found = []
    exchange = TASK_EXCHANGE
    if detail := _refused(connection, lambda ch: ch.exchange_declare(exchange.name, exchange.type,
                                                                      durable=exchange.durable, auto_delete=False)):
        found.append(Mismatch("exchange", exchange.name, detail))
    for queue in (topology or deployed()).all_queues:
        if not queue_state(connection, queue.name).exists:
            continue
        if detail := _refused(connection, lambda ch, q=queue: ch.queue_declare(
                queue=q.name, durable=q.durable, auto_delete=False, arguments=q.queue_arguments or {})):
            found.append(Mismatch("queue", queue.name, detail))
    return found


def check_arguments(connection: Any) -> list[str]:
    """Problems with the exchange and queues whose broker-side settings differ from the declaration."""
    return [f"{m.kind} {m.name!r} exists with other settings: {m.detail}" for m in mismatches(connection)]


# Where the alarm probe publishes: the default exchange drops a message no queue is named for.
ALARM_PROBE_ROUTING_KEY = "f_brain.alarm-probe"
# How long the probe waits for the broker's confirm; a broker that is not blocking answers in milliseconds.
ALARM_PROBE_TIMEOUT_S = 0.5
# A process that learned the broker blocks publishers asks again at most this often.
BLOCKED_RECHECK_S = 1.0
BLOCKED_REASON = "RabbitMQ is blocking publishers (a memory or disk alarm)"


class _FlowControl:
    """What this process last learned of RabbitMQ's flow control (connection.blocked / unblocked)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.blocked = False
        self.checked_at = 0.0


FLOW = _FlowControl()


def note_blocked(reason: str = BLOCKED_REASON) -> None:
    """connection.blocked arrived on one of this process's connections (a transport-option callback)."""
    FLOW.blocked = True
    FLOW.checked_at = time.monotonic()


def note_unblocked() -> None:
    """connection.unblocked arrived (a transport-option callback)."""
    FLOW.blocked = False


def resource_alarm(timeout: float = ALARM_PROBE_TIMEOUT_S) -> str | None:
    """Why RabbitMQ blocks publishers (a memory or disk alarm), or None when it accepts them.

    RabbitMQ blocks a connection only once it publishes, so the probe publishes
    messages no queue receives and waits for their confirms: at once when all is
    well, never while an alarm holds publishers. A blocked connection never
    answers a close either, so the probe drops its socket instead.
    """
    if not reports_consumers():
        return None  # only RabbitMQ raises resource alarms
    with broker_connection(write=True) as connection:
        # A channel of the protocol connection itself, not kombu's default channel:
        # kombu would close that one politely on the way out, and wait forever.
        channel = connection.connection.channel()
        try:
            # The first publish is read, and blocks the connection under an alarm; the
            # second is then never read, so its confirm never comes.
            for _ in range(2):
                channel.basic_publish(channel.prepare_message(b""), exchange="",
                                      routing_key=ALARM_PROBE_ROUTING_KEY, timeout=timeout)
        except TimeoutError:
            connection.collect()
            return BLOCKED_REASON
        channel.close()
    return None


def ensure_publishing_allowed() -> None:
    """Raise BrokerUnavailableError at once while RabbitMQ blocks publishers, instead of hanging a request.

    Only a process that already met the block pays a probe, at most once a
    BLOCKED_RECHECK_S; once the alarm has cleared it publishes again.
    """
    if not FLOW.blocked:
        return
    with FLOW.lock:
        if FLOW.blocked and time.monotonic() - FLOW.checked_at >= BLOCKED_RECHECK_S:
            FLOW.checked_at = time.monotonic()
            if resource_alarm() is None:
                # The publish that met the block dropped its connection (kombu collects
                # a connection on error): the next one connects afresh.
                FLOW.blocked = False
        if FLOW.blocked:
            raise BrokerBlockedError(BLOCKED_REASON)


def stop_retrying_if_blocked(exc: Exception, interval: float) -> None:
    """A publish retry policy's errback: a publish that met the block is not sent again (it would queue twice)."""
    if FLOW.blocked:
        raise BrokerBlockedError(BLOCKED_REASON) from exc


def stop_retrying_if_unconfirmed(exc: Exception, interval: float) -> None:
    """An errback stricter than stop_retrying_if_blocked: a publish whose confirm did not come is not sent again.

    The broker may have taken it (the block's notice not yet read), and will route it once
    the alarm clears; a connection that broke is reconnected and sent on as before.
    """
    if isinstance(exc, TimeoutError):
        raise BrokerBlockedError(f"no confirm within the publish's timeout ({BLOCKED_REASON}?)") from exc
    stop_retrying_if_blocked(exc, interval)
