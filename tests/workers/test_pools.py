"""The pool registry: one pool per lane, overrides parsed and validated, command lines rendered from it."""


import dataclasses

import pytest

from routing import LANE_NAMES
from workers.command import worker_argv
from workers.pools import RABBITMQ_CONSUMER_TIMEOUT_S, PoolConfigError, load_pools


def test_every_lane_is_consumed_by_exactly_its_pool():
    pools = load_pools({})
    assert set(pools) == set(LANE_NAMES)
    for lane in LANE_NAMES:
        assert [p.name for p in pools.values() if lane in p.queues] == [lane]



def test_pool_defaults_respect_the_consumer_timeout():
    for pool in load_pools({}).values():
        assert pool.soft_time_limit < pool.time_limit
        assert pool.time_limit * pool.prefetch_multiplier < RABBITMQ_CONSUMER_TIMEOUT_S
    interactive = load_pools({})["interactive"]
    assert interactive.prefetch_multiplier == 1



def test_environment_overrides_apply():
    pools = load_pools({"WORKER_BULK_CONCURRENCY": "4", "WORKER_INTERACTIVE_ACKS_LATE": "true"})
    assert pools["bulk"].concurrency == 4
    assert "--concurrency" in worker_argv(pools["bulk"])
    argv = worker_argv(pools["bulk"])
    assert argv[argv.index("--concurrency") + 1] == "4"



@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"WORKER_BULK_CONCURENCY": "4"}, "unknown setting 'concurency'"),
        ({"WORKER_FAST_CONCURRENCY": "4"}, "unknown pool"),
        ({"WORKER_BULK_CONCURRENCY": "four"}, "is not an integer"),
        ({"WORKER_BULK_CONCURRENCY": "0"}, "concurrency must be at least 1"),
        ({"WORKER_BULK_SOFT_TIME_LIMIT": "400"}, "soft_time_limit must be below time_limit"),
        ({"WORKER_MAINTENANCE_TIME_LIMIT": "1900", "WORKER_MAINTENANCE_SOFT_TIME_LIMIT": "1700"},
         "consumer_timeout"),
        # Early acks do not lift the limit: prefetched messages still wait unacknowledged.
        ({"WORKER_MAINTENANCE_ACKS_LATE": "false", "WORKER_MAINTENANCE_REJECT_ON_WORKER_LOST": "false",
          "WORKER_MAINTENANCE_TIME_LIMIT": "1900", "WORKER_MAINTENANCE_SOFT_TIME_LIMIT": "1700"}, "consumer_timeout"),
        ({"WORKER_INTERACTIVE_PREFETCH_MULTIPLIER": "4"}, "must be 1 on a priority lane"),
        ({"WORKER_BULK_IMPLEMENTATION": "threads"}, "implementation must be one of"),
        ({"WORKER_BULK_ACKS_LATE": "maybe"}, "is not a boolean"),
    ],
)
def test_impossible_overrides_are_rejected_clearly(environ, message):
    with pytest.raises(PoolConfigError, match=message):
        load_pools(environ)



def test_launcher_renders_each_pool_from_the_registry():
    for pool in load_pools({}).values():
        argv = worker_argv(pool)
        assert argv[argv.index("--hostname") + 1] == f"{pool.name}@%h"
        assert argv[argv.index("--queues") + 1] == ",".join(pool.queues)
        assert argv[argv.index("-O") + 1] == "fair"
        assert "-B" not in argv
        assert "--beat" not in argv
        assert not any(a.startswith("--autoscale") for a in argv)


@pytest.mark.parametrize(("backlog", "desired"), [(0, 0), (1, 1), (8, 1), (9, 2), (48, 6), (10_000, 6)])
def test_desired_replicas_is_the_backlog_over_a_replicas_capacity_within_bounds(backlog, desired):
    # Stated here, not read from the defaults: the formula is under test, not the registry's numbers.
    bulk = dataclasses.replace(load_pools({})["bulk"], concurrency=2, prefetch_multiplier=4, min_replicas=0,
                               max_replicas=6)
    assert bulk.replica_capacity == 8
    assert bulk.desired_replicas(backlog) == desired


def test_the_priority_lane_never_scales_to_zero():
    interactive = load_pools({})["interactive"]
    assert interactive.desired_replicas(0) == 1
    with pytest.raises(PoolConfigError, match="min_replicas must be at least 1 on a priority lane"):
        load_pools({"WORKER_INTERACTIVE_MIN_REPLICAS": "0"})
    with pytest.raises(PoolConfigError, match="replicas must satisfy"):
        load_pools({"WORKER_BULK_MIN_REPLICAS": "5", "WORKER_BULK_MAX_REPLICAS": "2"})
