"""Kubernetes manifests rendered from the pool registry: `python -m workers render k8s` writes deploy/k8s/.

Every number that matters comes from workers/pools.py: a Deployment per pool
running the launcher, its grace period above the pool's drain time, its
resources from its concurrency and recycling limits, a PodDisruptionBudget, and a
KEDA ScaledObject on the lane's queue length whose target is the pool's
per-replica capacity (Pool.desired_replicas is the same formula, reported by
/api/ops/queues, /metrics and doctor). Secrets are referenced, never written.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

from routing import DEFAULT_GENERATION

from ..pools import Pool
from .files import ROOT

DEFAULT_OUT = ROOT / "deploy" / "k8s"
EDGE_TEMPLATE = ROOT / "deploy" / "nginx" / "default.conf.template"
HEADER = ("# Rendered by `python -m workers render k8s` from workers/pools.py and deploy/nginx/;\n"
          "# do not edit by hand: a test fails when this file drifts from what the registry renders.\n")

APP = "f-brain"
IMAGE = "f-brain:latest"
CONFIG = f"{APP}-config"  # the non-secret settings (rendered, edit per cluster)
# SECRET_KEY, POSTGRES_PASSWORD, CELERY_BROKER_URL, KEDA_RABBITMQ_URL, METRICS_TOKEN: created by the operator.
SECRETS = f"{APP}-secrets"
# KEDA takes one broker URL, where Celery takes a cluster's list (";"-separated): a key of its own.
KEDA_BROKER_KEY = "KEDA_RABBITMQ_URL"
# The image's user (Dockerfile): numeric, so runAsNonRoot can be verified.
APP_UID = 10001
# What a pool's main process holds besides its children (the consumer, the Django app).
MAIN_PROCESS_KB = 200_000
# CPU a slot is asked for: provider calls are I/O-bound, the upserts and deletes are not.
CPU_MILLIS_PER_SLOT = 100
# Above the web server's graceful stop (server_config/serve.py) and the edge's drain.
WEB_TERMINATION_GRACE_S = 30
EDGE_PORT, WEB_PORT = 8080, 8000
EDGE_IMAGE, EDGE_UID = "nginxinc/nginx-unprivileged:1.27-alpine", 101
KEDA_POLLING_S = 15
# An idle lane scales to its minimum only after this long without backlog.
KEDA_COOLDOWN_S = 300


def _labels(component: str) -> dict:
    return {"app.kubernetes.io/name": APP, "app.kubernetes.io/component": component}


def _meta(name: str, component: str) -> dict:
    return {"name": name, "labels": _labels(component)}


def _env_from() -> list[dict]:
    return [{"configMapRef": {"name": CONFIG}}, {"secretRef": {"name": SECRETS}}]


def _pod_security() -> dict:
    return {"runAsNonRoot": True, "runAsUser": APP_UID, "runAsGroup": APP_UID, "fsGroup": APP_UID,
            "seccompProfile": {"type": "RuntimeDefault"}}


def _container_security() -> dict:
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def _app_container(name: str, command: list[str], resources: dict, **extra: object) -> dict:
    return {"name": name, "image": IMAGE, "command": command, "envFrom": _env_from(),
            "resources": resources, "securityContext": _container_security(), **extra}


def _deployment(name: str, component: str, containers: list[dict], grace_s: int, replicas: int | None = None,
                volumes: list[dict] | None = None) -> dict:
    spec: dict = {
        "selector": {"matchLabels": _labels(component)},
        "template": {
            "metadata": {"labels": _labels(component)},
            "spec": {"terminationGracePeriodSeconds": grace_s, "securityContext": _pod_security(),
                     "containers": containers},
        },
    }
    if replicas is not None:  # pools leave it to KEDA: a fixed count would fight the autoscaler
        spec["replicas"] = replicas
    if volumes:
        spec["template"]["spec"]["volumes"] = volumes
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(name, component), "spec": spec}


def _pdb(name: str, component: str, **budget: object) -> dict:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": _meta(name, component),
            "spec": {"selector": {"matchLabels": _labels(component)}, **budget}}


def pool_resources(pool: Pool) -> dict:
    """Requests from the slots, a memory limit above what recycling lets the children and main process hold."""
    limit_mib = math.ceil((pool.concurrency * pool.max_memory_per_child_kb + MAIN_PROCESS_KB) / 1024)
    return {"requests": {"cpu": f"{CPU_MILLIS_PER_SLOT * pool.concurrency}m",
                         "memory": f"{math.ceil(limit_mib / 2)}Mi"},
            "limits": {"memory": f"{limit_mib}Mi"}}


def pool_manifests(pool: Pool) -> list[dict]:
    """A pool's Deployment, PodDisruptionBudget and ScaledObject."""
    name = f"{APP}-worker-{pool.name}"
    component = f"worker-{pool.name}"
    worker = _app_container(
        "worker", ["python", "-m", "workers", "run", pool.name], pool_resources(pool),
        # The consumer loop touches a file; a stuck loop lets it go stale (workers/liveness.py).
        livenessProbe={"exec": {"command": ["python", "-m", "workers", "alive", pool.name]},
                       "initialDelaySeconds": 30, "periodSeconds": 30, "timeoutSeconds": 10,
                       "failureThreshold": 3})
    return [
        # On SIGTERM Celery's warm shutdown lets running tasks finish; the pod is killed
        # only after drain_seconds and ten more for the process to exit.
        _deployment(name, component, [worker], pool.stop_grace_s),
        _pdb(name, component, maxUnavailable=1),
        {
            "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": _meta(name, component),
            "spec": {
                "scaleTargetRef": {"name": name},
                "minReplicaCount": pool.min_replicas,
                "maxReplicaCount": pool.max_replicas,
                "pollingInterval": KEDA_POLLING_S,
                "cooldownPeriod": KEDA_COOLDOWN_S,
                "triggers": [{
                    "type": "rabbitmq",
                    # Ready messages over what one replica takes at once: Pool.desired_replicas.
                    "metadata": {"protocol": "amqp", "mode": "QueueLength", "queueName": queue,
                                 "value": str(pool.replica_capacity)},
                    "authenticationRef": {"name": f"{APP}-rabbitmq"},
                } for queue in pool.queues],
            },
        },
    ]


def rabbitmq_auth() -> dict:
    """KEDA reads the broker from the same Secret the pods use, by one URL (a cluster's client Service)."""
    return {"apiVersion": "keda.sh/v1alpha1", "kind": "TriggerAuthentication", "metadata": _meta(f"{APP}-rabbitmq",
                                                                                                 "autoscaling"),
            "spec": {"secretTargetRef": [{"parameter": "host", "name": SECRETS, "key": KEDA_BROKER_KEY}]}}


def web_manifests() -> list[dict]:
    """The web pods (the nginx edge in front of the web server), their Service and budget, and the edge's config."""
    probe = {"httpGet": {"path": "/healthz", "port": "edge"}, "periodSeconds": 10, "timeoutSeconds": 3}
    edge = {
        # The pod runs as non-root: the stock nginx image needs root (port 80, its cache and
        # conf.d owned by root). This build of the same nginx runs as its own user, 101.
        "name": "edge", "image": EDGE_IMAGE,
        "securityContext": {**_container_security(), "runAsUser": EDGE_UID, "runAsGroup": EDGE_UID},
        "env": [{"name": "EDGE_PORT", "value": str(EDGE_PORT)},
                {"name": "WEB_UPSTREAM", "value": f"127.0.0.1:{WEB_PORT}"}],
        "ports": [{"name": "edge", "containerPort": EDGE_PORT}],
        "volumeMounts": [{"name": "edge-template", "mountPath": "/etc/nginx/templates", "readOnly": True}],
        "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
        "livenessProbe": probe,
        "readinessProbe": {**probe, "httpGet": {"path": "/readyz", "port": "edge"}},
    }
    web = _app_container(
        "web", ["python", "-m", "server_config.serve"],
        {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "768Mi"}},
        # Reachable only through the edge in the same pod, which reads each request whole first.
        env=[{"name": "WEB_BIND_ADDRESS", "value": "127.0.0.1"}, {"name": "PORT", "value": str(WEB_PORT)}])
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(f"{APP}-edge", "web"),
         "data": {"default.conf.template": EDGE_TEMPLATE.read_text()}},
        _deployment(f"{APP}-web", "web", [edge, web], WEB_TERMINATION_GRACE_S, replicas=2,
                    volumes=[{"name": "edge-template", "configMap": {"name": f"{APP}-edge"}}]),
        {"apiVersion": "v1", "kind": "Service", "metadata": _meta(f"{APP}-web", "web"),
         "spec": {"selector": _labels("web"), "ports": [{"name": "http", "port": 80, "targetPort": "edge"}]}},
        _pdb(f"{APP}-web", "web", minAvailable=1),
    ]


def beat_manifests() -> list[dict]:
    """Beat: two replicas, so a standby takes over at once; the lease in the database lets one send."""
    beat = _app_container("beat", ["python", "-m", "workers", "beat"],
                          {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}})
    return [_deployment(f"{APP}-beat", "beat", [beat], 30, replicas=2), _pdb(f"{APP}-beat", "beat", maxUnavailable=1)]


def migrate_job() -> dict:
    """Migrations before a rollout: `kubectl apply -f migrate.yaml`, wait for it, then the rest."""
    migrate = _app_container("migrate", ["python", "manage.py", "migrate", "--noinput"],
                             {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}})
    pod = {"restartPolicy": "OnFailure", "securityContext": _pod_security(), "containers": [migrate]}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": _meta(f"{APP}-migrate", "migrate"),
            "spec": {"backoffLimit": 4, "ttlSecondsAfterFinished": 3600,
                     "template": {"metadata": {"labels": _labels("migrate")}, "spec": pod}}}


def settings_config() -> dict:
    """The non-secret settings every pod reads (edit per cluster; secrets go in the f-brain-secrets Secret)."""
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(CONFIG, "config"), "data": {
        "DEBUG": "false",
        "USE_POSTGRES": "true",
        "POSTGRES_HOST": "postgres",
        "POSTGRES_DB": "f_brain",
        "POSTGRES_USER": "f_brain",
        "ALLOWED_HOSTS": "weather.example.org",
        # The edge in the pod is one proxy; add one per load balancer in front of it.
        "NUM_TRUSTED_PROXIES": "1",
        "SECURE_PROXY_SSL_HEADER": "true",
        "LOG_FORMAT": "json",
        # The Cluster Operator's RabbitMQ is a 4.x series: every lane a replicated quorum queue.
        "RABBITMQ_GENERATION": str(int(DEFAULT_GENERATION)),
    }}


def manifests(pools: Iterable[Pool]) -> dict[str, list[dict]]:
    """Every rendered file and its objects."""
    return {
        "config.yaml": [settings_config()],
        "migrate.yaml": [migrate_job()],
        "web.yaml": web_manifests(),
        "beat.yaml": beat_manifests(),
        "pools.yaml": [rabbitmq_auth(), *(obj for pool in pools for obj in pool_manifests(pool))],
    }


def render(pools: Iterable[Pool]) -> dict[str, str]:
    """The text of every file under deploy/k8s/."""
    import yaml  # a development dependency: manifests are rendered where the code is, not in the image

    return {name: HEADER + yaml.safe_dump_all(objects, sort_keys=False, width=120)
            for name, objects in manifests(pools).items()}


def files(pools: dict[str, Pool], out: Path | None = None) -> dict[Path, str]:
    """Each manifest file's path (under deploy/k8s/, or `out`) and its text."""
    folder = out or DEFAULT_OUT
    return {folder / name: text for name, text in render(pools.values()).items()}
