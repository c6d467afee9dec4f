"""Tasks not executed: the broker, its alarms, consumers and pools, routes, and what the workers run."""

from __future__ import annotations

import time
from collections.abc import Iterator

from celery import current_app

from routing import LANE_NAMES, TASK_LANES, deployed
from routing.broker import (
    BrokerUnavailableError,
    broker_connection,
    broker_nodes,
    broker_version,
    check_arguments,
    generation_mismatch,
    node_states,
    queue_states,
    resource_alarm,
)
from weather.lanetasks.runner import registered_lanes
from workers.pools import Pool, load_pools

from .findings import FAIL, NOT_EXECUTED, OK, WARN, Context, Finding

# How long pools have to answer a ping or an inspect; a healthy pool answers in milliseconds.
CONTROL_TIMEOUT_S = 1.0
# Between two readings of a lane without consumers, to see whether its backlog grows.
GROWTH_SAMPLE_S = 1.0


def _finding(check: str, status: str, saw: str, todo: str = "") -> Finding:
    return Finding(NOT_EXECUTED, check, status, saw, todo)


def _nodes() -> Iterator[Finding]:
    """Each node of a cluster (the URL list), and whether a majority answers: quorum lanes need one."""
    if len(broker_nodes()) < 2:
        return
    nodes = node_states()
    down = {node: why for node, why in nodes.items() if why is not None}
    saw = ", ".join(f"{node} {'ok' if why is None else 'unreachable'}" for node, why in nodes.items())
    if len(down) * 2 >= len(nodes):
        quorum = ", ".join([*sorted(deployed().quorum_lane_names), "dead letters"])
        yield _finding("broker nodes", FAIL, f"{saw}: no majority of the cluster answers",
                       f"quorum lanes ({quorum}) accept nothing without a majority: "
                       "start the stopped nodes (`rabbitmqctl -n <node> start_app`); they resume by themselves")
    elif down:
        yield _finding("broker nodes", WARN, saw,
                       "the cluster runs on the others (quorum lanes keep their majority); bring the node back")
    else:
        yield _finding("broker nodes", OK, saw)


def _generation() -> Iterator[Finding]:
    """The broker's series is the generation the deployment states: it decides every lane's queue type."""
    stated = deployed().generation
    try:
        with broker_connection() as connection:
            version, problem = broker_version(connection), generation_mismatch(connection)
    except BrokerUnavailableError:
        return  # said by "broker reachable"
    if version is None:
        return  # not RabbitMQ: no queue types
    if problem:
        yield _finding("broker generation", FAIL, problem,
                       "every process of the deployment must state the broker's generation: pools refuse to start "
                       "until they do")
    else:
        yield _finding("broker generation", OK, f"RabbitMQ {version}, as RABBITMQ_GENERATION={stated.value} states")


def broker(context: Context) -> Iterator[Finding]:
    """Reachable with these credentials, a cluster's majority up, and not blocking publishers for an alarm."""
    try:
        alarm = resource_alarm()
    except BrokerUnavailableError as error:
        context.broker_down = True
        yield _finding("broker reachable", FAIL, str(error),
                       "check CELERY_BROKER_URL (host, port, user, password, vhost) and that RabbitMQ runs")
        yield from _nodes()
        return
    yield _finding("broker reachable", OK, "RabbitMQ accepted a connection with these credentials")
    yield from _nodes()
    yield from _generation()
    if alarm:
        context.broker_blocked = True
        yield _finding("broker alarm", FAIL, f"RabbitMQ blocks publishers: {alarm}",
                       "a memory or disk alarm is raised: `rabbitmq-diagnostics alarms` says which; free "
                       "memory or disk, or raise vm_memory_high_watermark / disk_free_limit")
    else:
        yield _finding("broker alarm", OK, "no memory or disk alarm: publishes are accepted")


def _pings() -> dict[str, list[str]]:
    """Worker host names that answered a ping, by pool (host names are `<pool>@<host>`)."""
    replies = current_app.control.ping(timeout=CONTROL_TIMEOUT_S) or []
    answered: dict[str, list[str]] = {}
    for reply in replies:
        for hostname in reply:
            answered.setdefault(hostname.split("@", 1)[0], []).append(hostname)
    return answered


def consumers(context: Context) -> Iterator[Finding]:
    """Every lane has consumers, each pool answers a ping, no lane grows with nobody reading it."""
    if context.broker_down:
        return
    states = queue_states(LANE_NAMES)
    answered = {} if context.broker_blocked else _pings()
    pools = load_pools()
    for lane in LANE_NAMES:
        state = states[lane]
        pool = next(name for name, p in pools.items() if lane in p.queues)
        if not state.exists:
            yield _finding(f"lane {lane}", FAIL, f"queue {lane!r} is not declared on the broker",
                           f"start the {pool} pool (it declares the topology) or run `manage.py topology --check`")
            continue
        if state.consumers is None:
            yield _finding(f"lane {lane}", WARN, f"consumers unknown: this broker transport does not count them "
                                                  f"({state.messages} waiting)",
                           "use RabbitMQ for consumer counts; the filesystem fallback is for development")
        elif state.consumers == 0:
            status, grows = FAIL, ""
            if state.messages and not context.quick:
                time.sleep(GROWTH_SAMPLE_S)
                later = queue_states([lane])[lane].messages
                grows = f", and growing ({state.messages} -> {later} in {GROWTH_SAMPLE_S:.0f} s)" if (
                    later > state.messages) else ""
            yield _finding(f"lane {lane}", status, f"no consumer; {state.messages} message(s) waiting{grows}",
                           f"start the {pool} pool: `python -m workers run {pool}`")
        else:
            yield _finding(f"lane {lane}", OK, f"{state.consumers} consumer(s), {state.messages} waiting")
        yield from _scaling(lane, pools[pool], state.messages)
        hosts = answered.get(pool, [])
        if context.broker_blocked:
            yield _finding(f"pool {pool} ping", WARN, "not pinged: a ping is a publish, and the broker blocks "
                                                       "publishers", "clear the broker alarm first")
        elif hosts:
            yield _finding(f"pool {pool} ping", OK, f"answered by {', '.join(sorted(hosts))}")
        elif state.consumers is not None:
            yield _finding(f"pool {pool} ping", FAIL, f"no {pool}@<host> worker answered a ping within "
                                                       f"{CONTROL_TIMEOUT_S:.0f} s",
                           f"start the {pool} pool; if it runs, it is stuck: look at its log, then restart it")


def _scaling(lane: str, pool: Pool, backlog: int) -> Iterator[Finding]:
    """What an autoscaler on the backlog asks for (KEDA's formula), and whether the pool's ceiling holds it back."""
    desired = pool.desired_replicas(backlog)
    saw = (f"{backlog} waiting / {pool.replica_capacity} a replica (concurrency x prefetch) -> {desired} "
           f"replica(s), within {pool.min_replicas}..{pool.max_replicas}")
    if backlog > pool.max_replicas * pool.replica_capacity:
        yield _finding(f"lane {lane} scaling", WARN, saw + ": at the ceiling with backlog left",
                       f"raise WORKER_{pool.name.upper()}_MAX_REPLICAS and re-render the manifests, "
                       "or let the backlog drain")
    else:
        yield _finding(f"lane {lane} scaling", OK, saw)


def routes(context: Context) -> Iterator[Finding]:
    """Every route names a declared lane, and every lane queue has the arguments it was declared with."""
    undeclared = sorted(f"{task} -> {lane}" for task, lane in TASK_LANES.items() if lane not in LANE_NAMES)
    if undeclared:
        yield _finding("routes", FAIL, f"routes to undeclared lanes: {', '.join(undeclared)}",
                       "fix routing/routes.py: every lane is declared in routing/lanes.py")
    else:
        yield _finding("routes", OK, f"{len(TASK_LANES)} task names, each routed to a declared lane")
    if context.broker_down:
        return
    with broker_connection() as connection:
        problems = check_arguments(connection)
    if problems:
        yield _finding("queue arguments", FAIL, "; ".join(problems),
                       "a queue's type or arguments cannot change in place: stop the pools of those queues, "
                       "then `python manage.py topology --migrate` moves them, keeping every message")
    else:
        yield _finding("queue arguments", OK, "every queue matches its declaration")


def task_lists(context: Context) -> Iterator[Finding]:
    """The tasks each worker registered match the route table (a worker on old code runs old tasks)."""
    if context.broker_down or context.broker_blocked:
        return
    registered = current_app.control.inspect(timeout=CONTROL_TIMEOUT_S).registered() or {}
    # Django tasks route themselves (their queue_name is checked against the lanes): the ones the pools import.
    current_app.loader.import_default_modules()
    routed = {name for name in TASK_LANES if not name.startswith("celery.")} | set(registered_lanes())
    if not registered:
        yield _finding("worker task lists", WARN, "no worker answered an inspect", "start the pools")
        return
    for hostname, names in sorted(registered.items()):
        ours = {name.split(" ")[0] for name in names if not name.startswith("celery.")}
        missing, unrouted = sorted(routed - ours), sorted(ours - routed)
        if missing or unrouted:
            yield _finding(f"tasks of {hostname}", FAIL,
                           f"missing {missing or 'none'}; registered but not routed {unrouted or 'none'}",
                           "deploy the same code to every pool, or add the task to routing/routes.py")
        else:
            yield _finding(f"tasks of {hostname}", OK, f"the {len(ours)} routed tasks")
