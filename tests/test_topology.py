"""One source of truth: routes, queues, pools, Procfile and docker-compose agree."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from django.conf import settings

from routing import DEAD_LETTER_EXCHANGE, LANE_NAMES, LANE_QUEUES, TASK_LANES, Priority, UnroutedTaskError, lane_for
from server_config.celery import app
from tools.harness import ROOT
from workers.command import worker_argv
from workers.pools import RABBITMQ_CONSUMER_TIMEOUT_S, PoolConfigError, load_pools


def test_every_registered_task_resolves_to_a_declared_lane():
    app.loader.import_default_modules()
    names = set(app.tasks)
    assert "weather.tasks.fetch_weather_for_city" in names
    for name in names:
        assert lane_for(name) in LANE_NAMES


def test_route_table_lists_only_real_tasks():
    app.loader.import_default_modules()
    assert set(TASK_LANES) <= set(app.tasks), set(TASK_LANES) - set(app.tasks)


def test_unknown_task_fails_loudly():
    assert settings.CELERY_TASK_CREATE_MISSING_QUEUES is False
    with pytest.raises(UnroutedTaskError, match=r"weather\.tasks\.typo"):
        app.send_task("weather.tasks.typo")


def test_settings_queues_are_the_declared_lanes():
    assert [q.name for q in app.conf.task_queues] == list(LANE_NAMES)
    assert app.conf.task_default_queue in LANE_NAMES
    for queue in LANE_QUEUES:
        assert queue.queue_arguments["x-dead-letter-exchange"] == DEAD_LETTER_EXCHANGE.name
        assert queue.durable
    interactive = next(q for q in LANE_QUEUES if q.name == "interactive")
    assert interactive.queue_arguments["x-max-priority"] >= max(Priority)
    assert Priority.CLICK > Priority.API > Priority.WARMUP


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


def _procfile() -> dict[str, str]:
    entries = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, command = line.split(":", 1)
            entries[name.strip()] = command.strip()
    return entries


def test_procfile_matches_the_registry():
    entries = _procfile()
    pools = load_pools({})
    workers = {name: cmd for name, cmd in entries.items() if "workers run" in cmd}
    assert workers == {name: f"python -m workers run {name}" for name in pools}
    beats = [name for name, cmd in entries.items() if "beat" in cmd]
    assert beats == ["beat"]
    assert entries["beat"] == "python -m workers beat"
    assert {"web", "release"} <= set(entries)


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_services_match_the_registry():
    services = _compose()["services"]
    pools = load_pools({})
    workers = {name: svc for name, svc in services.items() if name.startswith("worker-")}
    assert set(workers) == {f"worker-{name}" for name in pools}
    for name in pools:
        service = workers[f"worker-{name}"]
        assert service["command"] == ["python", "-m", "workers", "run", name]
        assert service["environment"]["POOL_NAME"] == name
        # container_name or fixed host ports would make `--scale` impossible.
        assert "container_name" not in service
        assert "ports" not in service
    beats = [name for name, svc in services.items() if "beat" in svc.get("command", [])]
    assert beats == ["beat"]
    assert services["flower"]["profiles"] == ["monitoring"]
    assert "basic-auth" in " ".join(services["flower"]["command"])
    images = {svc.get("image") for name, svc in services.items() if name not in ("db", "rabbitmq")}
    assert images == {"f-brain:latest"}


def test_every_setting_read_from_the_environment_is_in_env_example():
    read = set()
    for path in [*(ROOT / "server_config").glob("*.py"), *(ROOT / "weather").glob("*.py")]:
        read |= set(re.findall(r'env_(?:str|bool|int|float|list)\("([A-Z0-9_]+)"', path.read_text()))
    listed = set(re.findall(r"^#? ?([A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), flags=re.MULTILINE))
    assert "SECRET_KEY" in read
    assert read <= listed, f"missing from .env.example: {sorted(read - listed)}"


def test_compose_broker_credentials_are_not_guest():
    text = (ROOT / "docker-compose.yml").read_text()
    assert "guest" not in text
    assert "RABBITMQ_DEFAULT_USER" in text


def _compose_config(project: Path, env_text: str) -> subprocess.CompletedProcess:
    """`docker-compose config` as a user runs it: the compose file beside its .env."""
    shutil.copy(ROOT / "docker-compose.yml", project / "docker-compose.yml")
    (project / ".env").write_text(env_text)
    # A bare environment, so only the .env file (not this shell's variables) feeds it.
    return subprocess.run(["docker-compose", "config"], cwd=project, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin"})


@pytest.mark.skipif(shutil.which("docker-compose") is None and not os.environ.get("CI"),
                    reason="docker-compose is installed by .ci/run (required there)")
def test_compose_file_validates_with_a_real_parser(tmp_path):
    example = (ROOT / ".env.example").read_text()
    ok = _compose_config(tmp_path, example + "WORKER_BULK_CONCURRENCY=4\n")
    assert ok.returncode == 0, ok.stderr
    rendered = yaml.safe_load(ok.stdout)["services"]
    # .env reaches every Python service: a pool override set there is what the pool sees.
    assert rendered["worker-bulk"]["environment"]["WORKER_BULK_CONCURRENCY"] == "4"
    assert rendered["worker-bulk"]["environment"]["POSTGRES_HOST"] == "db"
    refused = _compose_config(tmp_path, "")
    assert refused.returncode != 0
    assert "set POSTGRES_PASSWORD" in refused.stderr or "set SECRET_KEY" in refused.stderr
