"""/metrics: the task metrics of every process, and each lane's depth and consumers asked of the broker."""

from __future__ import annotations

import os
from collections.abc import Iterator

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.crypto import constant_time_compare
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from routing import LANE_NAMES
from routing.broker import BrokerUnavailableError, queue_states
from weather.instrumentation import TASK_METRICS
from workers.pools import load_pools

from .doctor.checkup import recent_findings
from .doctor.findings import SEVERITY


class BrokerCollector(Collector):
    """Queue depth and consumers per lane, asked of the broker at scrape time."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily("f_brain_queue_depth", "Messages ready in a lane's queue", labels=["lane"])
        consumers = GaugeMetricFamily("f_brain_queue_consumers", "Consumers of a lane's queue", labels=["lane"])
        up = GaugeMetricFamily("f_brain_broker_up", "Whether the broker answered this scrape")
        desired = GaugeMetricFamily("f_brain_lane_desired_replicas",
                                    "Replicas the lane's backlog calls for (the ScaledObject's formula)",
                                    labels=["lane"])
        pools = load_pools()
        try:
            states = queue_states(LANE_NAMES)
        except BrokerUnavailableError:
            up.add_metric([], 0)
        else:
            for lane, state in states.items():
                depth.add_metric([lane], state.messages)
                pool = next(p for p in pools.values() if lane in p.queues)
                desired.add_metric([lane], pool.desired_replicas(state.messages))
                if state.consumers is not None:  # unknown on the filesystem fallback: no sample, not a 0
                    consumers.add_metric([lane], state.consumers)
            up.add_metric([], 1)
        yield from (depth, consumers, desired, up)


class DoctorCollector(Collector):
    """One gauge per doctor check: 0 ok, 1 warn, 2 fail (a cached quick run, shared with /ops/)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily("f_brain_doctor_check", "Doctor check result: 0 ok, 1 warn, 2 fail",
                                  labels=["symptom", "check"])
        for finding in recent_findings():
            gauge.add_metric([finding.symptom, finding.check], SEVERITY[finding.status])
        yield gauge


def render() -> bytes:
    """The exposition text for /metrics."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        for collector in TASK_METRICS:
            registry.register(collector)
    registry.register(BrokerCollector())
    registry.register(DoctorCollector())
    return generate_latest(registry)


@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition: for METRICS_TOKEN's bearer; with no token, closed unless DEBUG or METRICS_OPEN."""
    token = settings.METRICS_TOKEN
    if token:
        if not constant_time_compare(request.headers.get("Authorization", ""), f"Bearer {token}"):
            return JsonResponse({"error": "metrics need the bearer token"}, status=401)
    elif not (settings.DEBUG or settings.METRICS_OPEN):
        return JsonResponse({"error": "metrics are closed: set METRICS_TOKEN and scrape with it as a bearer token "
                                      "(or METRICS_OPEN=true where only a private network reaches the web role)"},
                            status=403)
    return HttpResponse(render(), content_type=CONTENT_TYPE_LATEST)
