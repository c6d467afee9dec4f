"""The Kubernetes manifests under deploy/k8s/: rendered from the registry, valid against real schemas, offline.

Core objects are validated with kubernetes-validate (the API's OpenAPI schemas,
strict: an unknown field fails); KEDA's objects with KEDA's published models
(the npm package @kubernetes-models/keda, pinned in tests/deploy/keda/). No
cluster runs here: what these tests cannot show is said in the README.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from server_config.serve import GRACEFUL_STOP_S
from tools.harness import ROOT
from workers.pools import load_pools
from workers.render import k8s

KUBERNETES_VERSION = "1.31.0"
KEDA_PACKAGE = ROOT / "tests" / "deploy" / "keda"


def _committed() -> dict[str, list[dict]]:
    return {path.name: [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
            for path in sorted(k8s.DEFAULT_OUT.glob("*.yaml"))}


def _objects(kind: str | None = None) -> list[dict]:
    return [doc for docs in _committed().values() for doc in docs if kind in (None, doc["kind"])]


def test_the_committed_manifests_are_what_the_registry_renders():
    rendered = k8s.render(load_pools({}).values())
    committed = {path.name: path.read_text() for path in k8s.DEFAULT_OUT.glob("*.yaml")}
    assert committed == rendered, "deploy/k8s/ drifted from the registry: run `python -m workers render k8s`"


def test_core_objects_validate_against_the_kubernetes_schema():
    core = [doc for doc in _objects() if not doc["apiVersion"].startswith("keda.sh/")]
    assert {doc["kind"] for doc in core} == {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "Job"}
    for doc in core:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_a_wrong_field_is_caught_by_the_schema():
    deployment = json.loads(json.dumps(_objects("Deployment")[0]))
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 30  # the real name ends in Seconds
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.fixture(scope="module")
def keda_models(tmp_path_factory) -> Path:
    """KEDA's models installed from the npm registry at the pinned versions (package-lock.json)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        if os.environ.get("CI"):
            pytest.fail("node and npm are missing: .ci/run installs them")
        pytest.skip("node and npm are needed to run KEDA's published validators")
    folder = tmp_path_factory.mktemp("keda")
    for name in ("package.json", "package-lock.json", "validate.mjs"):
        shutil.copy(KEDA_PACKAGE / name, folder / name)
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=folder, check=True,
                   capture_output=True, timeout=300)
    return folder


def _keda_validate(folder: Path, objects: list[dict]) -> subprocess.CompletedProcess:
    return subprocess.run(["node", "validate.mjs"], cwd=folder, input=json.dumps(objects), capture_output=True,
                          text=True, timeout=60)


@pytest.mark.integration
def test_keda_objects_validate_against_kedas_published_models(keda_models):
    objects = _objects("ScaledObject") + _objects("TriggerAuthentication")
    assert len(_objects("ScaledObject")) == len(load_pools({}))
    result = _keda_validate(keda_models, objects)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("valid ") == len(objects)
    # The validator refuses what is wrong (a replica count that is not a number).
    broken = json.loads(json.dumps(objects[0]))
    broken["spec"]["minReplicaCount"] = "one"
    refused = _keda_validate(keda_models, [broken])
    assert refused.returncode == 1
    assert "minReplicaCount" in refused.stdout


def test_each_pool_is_deployed_as_the_registry_declares_it():
    pools = load_pools({})
    deployments = {doc["metadata"]["name"]: doc for doc in _objects("Deployment")}
    scaled = {doc["metadata"]["name"]: doc for doc in _objects("ScaledObject")}
    budgets = {doc["metadata"]["name"] for doc in _objects("PodDisruptionBudget")}
    for pool in pools.values():
        name = f"f-brain-worker-{pool.name}"
        pod = deployments[name]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["command"] == ["python", "-m", "workers", "run", pool.name]
        assert pod["terminationGracePeriodSeconds"] > pool.drain_seconds
        assert container["livenessProbe"]["exec"]["command"] == ["python", "-m", "workers", "alive", pool.name]
        assert "replicas" not in deployments[name]["spec"], "KEDA owns the replica count"
        assert name in budgets
        spec = scaled[name]["spec"]
        assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (pool.min_replicas, pool.max_replicas)
        (trigger,) = spec["triggers"]
        assert trigger["metadata"]["queueName"] == pool.name
        assert int(trigger["metadata"]["value"]) == pool.concurrency * pool.prefetch_multiplier
    assert scaled["f-brain-worker-interactive"]["spec"]["minReplicaCount"] >= 1, "a click never waits for a start"


def test_the_web_pod_serves_through_the_edge_with_probes():
    (web,) = [doc for doc in _objects("Deployment") if doc["metadata"]["name"] == "f-brain-web"]
    pod = web["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    assert containers["web"]["command"] == ["python", "-m", "server_config.serve"]
    assert {"name": "WEB_BIND_ADDRESS", "value": "127.0.0.1"} in containers["web"]["env"]
    assert containers["edge"]["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert containers["edge"]["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # The pod is non-root: the edge's image must be one that runs as its own user (the stock one needs root).
    assert pod["securityContext"]["runAsNonRoot"]
    assert containers["edge"]["image"].startswith("nginxinc/nginx-unprivileged:")
    assert containers["edge"]["securityContext"]["runAsUser"] == 101
    assert int(containers["edge"]["ports"][0]["containerPort"]) >= 1024, "no capability to bind a low port"
    assert pod["terminationGracePeriodSeconds"] > GRACEFUL_STOP_S
    (edge_config,) = [doc for doc in _objects("ConfigMap") if doc["metadata"]["name"] == "f-brain-edge"]
    template = (ROOT / "deploy" / "nginx" / "default.conf.template").read_text()
    assert edge_config["data"]["default.conf.template"] == template, "the same edge as compose and the tests"
    (service,) = _objects("Service")
    assert service["spec"]["ports"][0]["targetPort"] == "edge"


def test_secrets_are_referenced_never_written():
    assert not _objects("Secret")
    text = "".join(path.read_text() for path in k8s.DEFAULT_OUT.glob("*.yaml"))
    for key in ("SECRET_KEY", "POSTGRES_PASSWORD", "METRICS_TOKEN"):
        assert f"{key}:" not in text
    for deployment in _objects("Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            if container["name"] != "edge":
                assert {"secretRef": {"name": "f-brain-secrets"}} in container["envFrom"]


def test_beat_runs_with_a_standby_and_migrations_run_as_a_job():
    (beat,) = [doc for doc in _objects("Deployment") if doc["metadata"]["name"] == "f-brain-beat"]
    assert beat["spec"]["replicas"] >= 2, "the lease lets any number run; one sends"
    (job,) = _objects("Job")
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["python", "manage.py", "migrate",
                                                                            "--noinput"]
