"""What workers/consumer.py relies on inside Celery's consumer, pinned to the Celery release it was checked against."""

from __future__ import annotations

import inspect
from importlib.metadata import version

from celery.worker.consumer import Consumer
from celery.worker.consumer.delayed_delivery import DelayedDelivery

from workers.consumer import CELERY_DELAYED_DELIVERY_STEP, DelayedDeliveryOnLiveNode, LaneConsumer

# Re-read Celery's consumer (blueprint steps, the connection-error hook) before moving this pin.
CHECKED_AGAINST = "5.7.0"


def test_the_pin_is_the_celery_that_runs() -> None:
    assert version("celery") == CHECKED_AGAINST


def test_the_one_step_swapped_is_celery_s_delayed_delivery_and_the_rest_keep_their_order() -> None:
    celery_steps = list(Consumer.Blueprint.default_steps)
    assert f"{DelayedDelivery.__module__}:{DelayedDelivery.__name__}" == CELERY_DELAYED_DELIVERY_STEP
    assert CELERY_DELAYED_DELIVERY_STEP in celery_steps
    ours = list(LaneConsumer.Blueprint.default_steps)
    assert ours == [("workers.consumer:DelayedDeliveryOnLiveNode" if step == CELERY_DELAYED_DELIVERY_STEP else step)
                    for step in celery_steps]
    # Started where Celery's was: after the task consumer exists, so its queues can be bound.
    assert [f"{step.__module__}:{step.__name__}" for step in DelayedDelivery.requires] == \
        list(DelayedDeliveryOnLiveNode.requires)


def test_the_hooks_overridden_are_celery_s_own() -> None:
    for name in ("connect", "on_connection_error_after_connected"):
        assert callable(getattr(Consumer, name)), name
    assert list(inspect.signature(Consumer.on_connection_error_after_connected).parameters) == ["self", "exc"]
