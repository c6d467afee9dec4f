"""`manage.py topology [--check | --migrate]`: print the messaging topology; verify it against the broker, or move
the broker to it."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from routing import DEAD_LETTER_EXCHANGE, TASK_EXCHANGE, TASK_LANES, deployed
from routing.broker import (
    BrokerUnavailableError,
    broker_connection,
    broker_version,
    check_arguments,
    generation_mismatch,
    node_states,
    queue_state,
)
from routing.migrate import MigrationRefusedError, migrate
from workers.pools import load_pools


class Command(BaseCommand):
    """Show exchanges, queues, bindings, routes and pools; --check asks the broker."""

    help = "Print the topology; with --check verify queues, arguments and consumers on the broker."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--check", action="store_true",
                            help="connect to the broker; exit 1 naming whatever is missing")
        parser.add_argument("--migrate", action="store_true",
                            help="move queues and the exchange declared differently on the broker to this "
                                 "topology, keeping every message (stop the pools of the queues to move first)")

    def handle(self, *args: object, **options: object) -> None:
        self._print()
        if options["migrate"]:
            self._migrate()
        if options["check"]:
            self._check()

    def _migrate(self) -> None:
        try:
            with broker_connection(write=True) as connection:
                if problem := generation_mismatch(connection):
                    raise CommandError(f"not migrating: {problem}")
                changes = migrate(connection, report=self.stdout.write)
        except (BrokerUnavailableError, MigrationRefusedError) as error:
            raise CommandError(str(error)) from error
        self.stdout.write(self.style.SUCCESS(f"migrated: {'; '.join(changes)}" if changes
                                             else "the broker already matches the topology"))

    def _print(self) -> None:
        out = self.stdout.write
        topology = deployed()
        out(f"Broker generation: RabbitMQ {topology.generation.value}.x (RABBITMQ_GENERATION)")
        out("Exchanges")
        for exchange in (TASK_EXCHANGE, DEAD_LETTER_EXCHANGE):
            out(f"  {exchange.name:<16} {exchange.type:<7} durable={exchange.durable}")
        out("Queues (bindings)")
        for queue in topology.all_queues:
            arguments = ", ".join(f"{k}={v}" for k, v in sorted((queue.queue_arguments or {}).items()))
            out(f"  {queue.name:<12} <- {queue.exchange.name} key={queue.routing_key:<12} {arguments}")
        out("Routes")
        for task, lane in sorted(TASK_LANES.items(), key=lambda item: (item[1], item[0])):
            out(f"  {lane:<12} {task}")
        out("Pools")
        for pool in load_pools().values():
            out(f"  {pool.name:<12} queues={','.join(pool.queues)} concurrency={pool.concurrency} "
                f"prefetch={pool.prefetch_multiplier} limits={pool.soft_time_limit}/{pool.time_limit}s "
                f"acks_late={pool.acks_late}")

    def _check(self) -> None:
        problems: list[str] = []
        topology = deployed()
        try:
            with broker_connection() as connection:
                version = broker_version(connection)
                if problem := generation_mismatch(connection):
                    problems.append(problem)
                states = {q.name: queue_state(connection, q.name) for q in topology.all_queues}
                problems += [f"queue {name!r} does not exist" for name, state in states.items() if not state.exists]
                problems += check_arguments(connection)
                # None: the transport cannot count consumers (the filesystem fallback); not a failure.
                problems += [
                    f"queue {queue.name!r} has no consumer (is its pool running?)"
                    for queue in topology.lane_queues
                    if states[queue.name].exists and states[queue.name].consumers == 0
                ]
        except BrokerUnavailableError as error:
            raise CommandError(str(error)) from error
        self.stdout.write("Broker nodes")
        for node, why in node_states().items():
            self.stdout.write(f"  {node}: {'ok' if why is None else 'unreachable: ' + why}")
        self.stdout.write(f"Broker{f' (RabbitMQ {version})' if version else ''}")
        for state in states.values():
            consumers = "unknown (this transport does not count them)" if state.consumers is None else state.consumers
            self.stdout.write(f"  {state.name:<12} exists={state.exists} messages={state.messages} "
                              f"consumers={consumers}")
        if problems:
            raise CommandError("topology check failed:\n  " + "\n  ".join(problems))
        self.stdout.write(self.style.SUCCESS("topology check passed"))
