"""The pools' consumer: Celery's, with the broker's generation checked and the topology declared on every (re)connect.

This is the one module that reaches into Celery's consumer internals: its blueprint's
step list (one step swapped) and its connection-error hook. Both are pinned by
tests/workers/test_consumer.py against the Celery release in requirements.txt; a
Celery upgrade that moves them fails there first.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from amqp.exceptions import ChannelError, NotFound
from celery import bootsteps
from celery.worker.consumer import Consumer
from kombu.transport.native_delayed_delivery import (
    bind_queue_to_native_delayed_delivery_exchange,
    declare_native_delayed_delivery_exchanges_and_queues,
)

from routing import deployed
from routing.broker import BROKER_ERRORS, connect, ensure_generation
from routing.declare import declare_what_can_be

log = logging.getLogger(__name__)

# Between two tries to consume a queue the broker cannot serve now (its home node down).
QUEUE_ABSENT_RETRY_S = 2.0
# Celery's own delayed-delivery step, which this module replaces in the consumer's blueprint.
CELERY_DELAYED_DELIVERY_STEP = "celery.worker.consumer.delayed_delivery:DelayedDelivery"


class DelayedDeliveryOnLiveNode(bootsteps.StartStopStep):
    """Celery's native delayed delivery set up through the node the worker is connected to, never blocking on others.

    Celery's own step sets it up once per URL of the broker list, retrying each with
    sleeps: with one node of a cluster dead, every reconnect spent some 20 s asleep,
    the worker missed its heartbeats, lost its connection, and started over, forever.
    The delay exchanges and queues belong to the cluster, so declaring them through
    any live node is enough; a failure is logged and the worker consumes anyway (the
    next reconnect tries again).
    """

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def include_if(self, c: Any) -> bool:
        # RabbitMQ only (the filesystem fallback of scripts/run has no exchange bindings), with a quorum lane.
        driver = c.app.connection_for_write().transport.driver_type
        return driver == "amqp" and bool(deployed().quorum_lane_names)

    def start(self, c: Any) -> None:
        try:
            with c.app.connection_for_write() as connection:
                connect(connection)
                declare_native_delayed_delivery_exchanges_and_queues(
                    connection, c.app.conf.broker_native_delayed_delivery_queue_type)
                # Every lane, not only this pool's: a process that knows a quorum lane (the web, any
                # other pool) sends every countdown through the delay queues, the classic interactive
                # lane's too (a Django task's run_after); unbound, the broker dropped it.
                for queue in deployed().lane_queues:
                    bind_queue_to_native_delayed_delivery_exchange(connection, queue)
        except (*BROKER_ERRORS, ChannelError) as error:
            log.warning("delayed delivery not set up now (%s); countdowns wait in the worker until it is", error)


class LaneConsumer(Consumer):
    """Celery's consumer: the broker's generation checked and the topology declared on every (re)connect, delayed
    delivery set up by DelayedDeliveryOnLiveNode, and a queue's absence waited out.

    Both happen as the connection opens, before any step talks to the broker or consumes:
    a broker that lost its state gets it back; one of another generation than the
    deployment states stops the pool with BrokerGenerationError (Celery's "Unrecoverable
    error", exit status 1), since its queues would be declared as the wrong type.

    NOT_FOUND from the broker while the consumer starts (the lane's classic queue
    whose home node is down, a queue deleted under it) is a reason to reconnect and
    declare again, not to exit: Celery would treat it as unrecoverable, and a pool
    that exits takes the whole Procfile down with it. PRECONDITION_FAILED (a queue
    declared with other settings) stays fatal: only an operator can resolve it.
    """

    class Blueprint(Consumer.Blueprint):
        default_steps = [
            "workers.consumer:DelayedDeliveryOnLiveNode" if step == CELERY_DELAYED_DELIVERY_STEP else step
            for step in Consumer.Blueprint.default_steps
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connection_errors = (*self.connection_errors, NotFound)

    def connect(self) -> Any:
        connection = super().connect()
        ensure_generation(connection)
        declare_what_can_be(connection)
        return connection

    def on_connection_error_after_connected(self, exc: Exception) -> None:
        if isinstance(exc, NotFound):
            log.warning("cannot consume now (%s); trying again in %.0f s", exc, QUEUE_ABSENT_RETRY_S)
            time.sleep(QUEUE_ABSENT_RETRY_S)
        super().on_connection_error_after_connected(exc)
