"""Deployment files agree with the registry: Procfile, docker-compose and .env.example."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tools.harness import ROOT, procfile
from workers.pools import load_pools


def test_procfile_matches_the_registry():
    entries = procfile()
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
        # container_name, fixed host ports or a fixed host name would make `--scale` impossible.
        assert not {"container_name", "ports", "hostname"} & set(service), service
        # Docker kills a container after its grace: the pool's drain time must fit inside it.
        assert int(service["stop_grace_period"].removesuffix("s")) > pools[name].drain_seconds
    beats = [name for name, svc in services.items() if "beat" in svc.get("command", [])]
    assert beats == ["beat"]
    assert services["flower"]["profiles"] == ["monitoring"]
    assert "basic-auth" in " ".join(services["flower"]["command"])
    images = {svc.get("image") for name, svc in services.items()
              if name not in ("db", "edge") and not name.startswith("rabbitmq")}
    assert images == {"f-brain:latest"}
    # Clients reach the web server only through the edge, which reads each request whole first.
    assert "ports" not in services["web"]
    assert services["web"]["environment"]["NUM_TRUSTED_PROXIES"] == "1"
    published = [name for name, svc in services.items() if svc.get("ports") and name != "flower"]
    assert published == ["edge"]


def test_the_compose_edge_renders_the_template_the_tests_run():
    edge = _compose()["services"]["edge"]
    template = ROOT / "deploy" / "nginx" / "default.conf.template"
    assert f"./{template.relative_to(ROOT)}:/etc/nginx/templates/default.conf.template:ro" in edge["volumes"]
    # Every placeholder of the template is given by compose, and nothing else is.
    placeholders = set(re.findall(r"\$\{([A-Z_]+)\}", template.read_text()))
    assert placeholders == set(edge["environment"])
    assert edge["environment"]["WEB_UPSTREAM"] == "web:8000"



def test_every_setting_read_from_the_environment_is_in_env_example():
    read = set()
    for path in [*(ROOT / "server_config").rglob("*.py"), *(ROOT / "weather").rglob("*.py")]:
        read |= set(re.findall(r'env_(?:str|bool|int|float|list)\("([A-Z0-9_]+)"', path.read_text()))
    listed = set(re.findall(r"^#? ?([A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), flags=re.MULTILINE))
    assert "SECRET_KEY" in read
    assert read <= listed, f"missing from .env.example: {sorted(read - listed)}"



def test_compose_broker_credentials_are_not_guest():
    text = (ROOT / "docker-compose.yml").read_text()
    assert "guest" not in text
    assert "RABBITMQ_DEFAULT_USER" in text



def test_the_compose_cluster_profile_forms_one_cluster_of_every_rabbitmq_node():
    services = _compose()["services"]
    nodes = {name: service for name, service in services.items() if service.get("image", "").startswith("rabbitmq:")}
    assert len(nodes) == 3, sorted(nodes)
    conf = (ROOT / "deploy" / "rabbitmq" / "cluster.conf").read_text()
    seeds = set(re.findall(r"^cluster_formation\.classic_config\.nodes\.\d+ = rabbit@(\S+)$", conf, re.MULTILINE))
    # The profile's nodes join the default stack's one node, which needs no formation settings to start alone.
    assert seeds == {"rabbitmq"}
    assert {service["hostname"] for service in nodes.values()} == {"rabbitmq", "rabbitmq-2", "rabbitmq-3"}
    volumes = set()
    for name, service in nodes.items():
        mounts = [v.split(":") for v in service["volumes"]]
        assert ["./deploy/rabbitmq/node.conf", "/etc/rabbitmq/conf.d/20-node.conf", "ro"] in mounts, name
        joins = ["./deploy/rabbitmq/cluster.conf", "/etc/rabbitmq/conf.d/30-cluster.conf", "ro"] in mounts
        assert joins == (name != "rabbitmq"), name
        volumes |= {source for source, target, *_ in mounts if target == "/var/lib/rabbitmq"}
        if name != "rabbitmq":
            assert service["profiles"] == ["cluster"], name
            assert service["depends_on"]["rabbitmq"]["condition"] == "service_healthy", name
    assert len(volumes) == 3, "each node keeps its own data"
    # The lanes are first declared once every node runs (a quorum queue takes the members present then).
    waits = services["migrate"]["depends_on"]
    for name in nodes:
        assert waits[name]["condition"] == "service_healthy", name
        assert waits[name].get("required", True) == (name == "rabbitmq"), name
    # The client URL list the example gives names every node.
    example = re.search(r"^# CELERY_BROKER_URL=(\S+)$", (ROOT / ".env.example").read_text(), re.MULTILINE)
    assert example, ".env.example shows the cluster's URL list"
    assert {url.split("@")[1].split(":")[0] for url in example.group(1).split(";")} == {
        service["hostname"] for service in nodes.values()}


def _compose_config(project: Path, env_text: str, *args: str) -> subprocess.CompletedProcess:
    """`docker compose config` (Compose v2) as a user runs it: the compose file beside its .env."""
    shutil.copy(ROOT / "docker-compose.yml", project / "docker-compose.yml")
    (project / ".env").write_text(env_text)
    # A bare environment, so only the .env file (not this shell's variables) feeds it.
    return subprocess.run(["docker", "compose", *args, "config"], cwd=project, capture_output=True, text=True,
                          env={"PATH": "/usr/local/bin:/usr/bin:/bin"})


def _compose_v2_installed() -> bool:
    return shutil.which("docker") is not None and subprocess.run(
        ["docker", "compose", "version"], capture_output=True).returncode == 0


@pytest.mark.integration
@pytest.mark.skipif(not _compose_v2_installed() and not os.environ.get("CI"),
                    reason="Compose v2 is installed by .ci/run (scripts/docker-engine; required there)")
def test_compose_file_validates_with_a_real_parser(tmp_path):
    example = (ROOT / ".env.example").read_text()
    ok = _compose_config(tmp_path, example + "WORKER_BULK_CONCURRENCY=4\n")
    assert ok.returncode == 0, ok.stderr
    rendered = yaml.safe_load(ok.stdout)["services"]
    # .env reaches every Python service: a pool override set there is what the pool sees.
    assert rendered["worker-bulk"]["environment"]["WORKER_BULK_CONCURRENCY"] == "4"
    assert rendered["worker-bulk"]["environment"]["POSTGRES_HOST"] == "db"
    clustered = _compose_config(tmp_path, example, "--profile", "cluster")
    assert clustered.returncode == 0, clustered.stderr
    cookie = yaml.safe_load(clustered.stdout)["services"]["rabbitmq-3"]["environment"]["RABBITMQ_CTL_ERL_ARGS"]
    assert cookie == "-setcookie change-me-to-a-long-random-string"
    refused = _compose_config(tmp_path, "")
    assert refused.returncode != 0
    # Compose reports the first required variable it meets, in no fixed order: any of them will do.
    assert re.search(r"required variable \w+ is missing a value: set \w+ in \.env", refused.stderr), refused.stderr


def test_every_image_the_project_names_has_its_stand_in_in_the_test_override():
    from tools.standins import BROKER_SUITES, HERE, STANDINS

    override = yaml.safe_load((HERE / "compose.yml").read_text())["services"]
    tags = {standin.tag for standin in STANDINS.values()}
    named = {name: svc["image"] for name, svc in _compose()["services"].items() if svc.get("image") != "f-brain:latest"}
    assert named, "docker-compose.yml names official images"
    for service, image in named.items():
        replacement = override[service]["image"]
        generations = BROKER_SUITES if "${STANDIN_BROKER" in replacement else {"": ""}
        for generation in generations:
            tag = re.sub(r"\$\{STANDIN_BROKER:-\d\}", generation, replacement)
            assert tag in tags, (service, tag)
            standin = next(s for s in STANDINS.values() if s.tag == tag)
            # The stand-in replaces the same image (its series may differ: RabbitMQ is built in two).
            assert standin.replaces.split(":")[0] == image.split(":")[0], (service, image, standin)
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE).group(1)
    assert base == STANDINS["python"].replaces
