"""The broker generation a deployment states, checked against the broker it runs on; RabbitMQ 4.3's refusal of
transient non-exclusive queues, which Celery 5.7's control queues survive."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from amqp.exceptions import AMQPError
from celery import current_app as app
from django.conf import settings
from django.db import connection
from kombu import Connection, Queue

from routing import LANE_NAMES, BrokerGeneration, deployed
from tools.harness import ROOT, broker_ctl, own_vhost, worker_env


@pytest.mark.parametrize(("version", "generation"), [("3.10.8", 3), ("3.13.7", 3), ("4.0.5", 4), ("4.3.0", 4)])
def test_a_broker_version_names_its_generation(version, generation):
    assert BrokerGeneration.of_version(version) == generation


def test_an_unknown_series_is_a_clear_error():
    with pytest.raises(ValueError, match=r"RabbitMQ 5\.0\.0 is not a series this topology knows \(3\.x, 4\.x\)"):
        BrokerGeneration.of_version("5.0.0")


def _other_generation() -> str:
    return str(next(g.value for g in BrokerGeneration if g is not settings.RABBITMQ_GENERATION))


def _run(argv: list[str], env: dict[str, str], timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.integration
@pytest.mark.generations
def test_the_launcher_reads_the_generation_from_the_broker(transactional_db, simulator_server):
    env = worker_env(connection.settings_dict["NAME"], simulator_server.url)
    done = _run(["-m", "workers", "broker-generation"], env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(settings.RABBITMQ_GENERATION.value)


@pytest.mark.integration
@pytest.mark.generations
def test_a_deployment_stating_another_generation_is_refused_loudly_everywhere(transactional_db, simulator_server):
    other = _other_generation()
    with own_vhost("f_brain_generation_test") as url:
        env = {**worker_env(connection.settings_dict["NAME"], simulator_server.url), "CELERY_BROKER_URL": url,
               "RABBITMQ_GENERATION": other}
        expected = f"this deployment states RABBITMQ_GENERATION={other}: set RABBITMQ_GENERATION="
        pool = _run(["-m", "workers", "run", "interactive"], env)
        assert pool.returncode == 1, pool.stdout[-2000:]
        assert "Unrecoverable error: BrokerGenerationError" in pool.stdout + pool.stderr
        assert expected in pool.stdout + pool.stderr
        declared = broker_ctl("list_queues", "-p", "f_brain_generation_test", "name").stdout.split()
        assert not set(declared) & set(LANE_NAMES), f"the refused pool declared {declared}"
        check = _run(["manage.py", "topology", "--check"], env)
        assert check.returncode == 1
        assert expected in check.stderr, check.stderr
        doctor = _run(["manage.py", "doctor", "--json"], env)
        findings = {f["check"]: f for f in map(json.loads, doctor.stdout.splitlines())}
        assert doctor.returncode == 1
        assert findings["broker generation"]["status"] == "fail"
        assert expected in findings["broker generation"]["saw"]


@pytest.mark.integration
@pytest.mark.rabbitmq4
def test_on_a_broker_refusing_transient_queues_every_pool_answers_control(live):
    # The run's RabbitMQ 4.0 refuses them, as 4.3 does by default (scripts/test starts it so).
    with Connection(app.conf.broker_url) as broker, pytest.raises(AMQPError, match="transient_nonexcl_queues"):
        Queue("f_brain.transient-probe", durable=False, exclusive=False, auto_delete=False).bind(
            broker.default_channel).declare()
    assert deployed().generation is BrokerGeneration.RABBITMQ_4
    replies = app.control.ping(timeout=2.0)
    answered = {name.split("@", 1)[0] for reply in replies for name in reply}
    assert answered == set(LANE_NAMES)
    active = app.control.inspect(timeout=2.0).active_queues() or {}
    consumed = {worker.split("@", 1)[0]: {queue["name"] for queue in queues} for worker, queues in active.items()}
    assert consumed == {lane: {lane} for lane in LANE_NAMES}
    # docker-compose's health check of a pool, as its container runs it; Kubernetes' liveness command is
    # tests/workers/test_liveness.py's, also run on this broker.
    probe = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["x-worker"]["healthcheck"]["test"][1]
    env = {**live.env, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "HOSTNAME": socket.gethostname()}
    for lane in LANE_NAMES:
        done = subprocess.run(["sh", "-c", probe.replace("$$", "$")], cwd=ROOT, env={**env, "POOL_NAME": lane},
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, (lane, done.stdout, done.stderr)
