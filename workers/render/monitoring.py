"""Prometheus alert rules and a Grafana dashboard from the pool registry: `python -m workers render monitoring`.

Per lane, from workers/pools.py: backlog against what the pool's replicas can hold at
most, queue wait p95 against the lane's wait budget, no consumers (at once on a lane
that never scales to zero, with a backlog on one that does), runs near the soft limit.
Then what concerns the whole deployment, from doctor's own checks: a failing check, a
stale beat, a broker alarm, dead letters, a broker that did not answer the scrape.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..pools import Pool
from .files import ROOT

ALERTS_PATH = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD_PATH = ROOT / "deploy" / "grafana" / "f-brain.json"
HEADER = ("# Rendered by `python -m workers render monitoring` from workers/pools.py; do not edit by hand:\n"
          "# a test fails when this file drifts from what the registry renders.\n")

# The metrics these read (weather/instrumentation.py, weather/ops/metrics.py); a test scrapes /metrics
# and fails if one of them is not exposed.
DEPTH, CONSUMERS, BROKER_UP = "f_brain_queue_depth", "f_brain_queue_consumers", "f_brain_broker_up"
WAIT_BUCKETS, RUN_BUCKETS = "f_brain_task_queue_wait_seconds_bucket", "f_brain_task_runtime_seconds_bucket"
TASKS_TOTAL, NEAR_SOFT_LIMIT = "f_brain_tasks_total", "f_brain_task_near_soft_limit_total"
DOCTOR = "f_brain_doctor_check"
METRICS_READ = (DEPTH, CONSUMERS, BROKER_UP, WAIT_BUCKETS, RUN_BUCKETS, TASKS_TOTAL, NEAR_SOFT_LIMIT, DOCTOR)
# Doctor checks that have an alert of their own; every other failing check is FBrainDoctorFailing.
OWN_ALERT_CHECKS = ("beat alive", "broker alarm", "dead letters")
FAIL = 2
DASHBOARD_UID = "f-brain-lanes"


def wait_p95(lane: str, window: str = "10m") -> str:
    """PromQL: the lane's queue wait p95 over `window`, every process's histogram summed."""
    return f'histogram_quantile(0.95, sum by (le) (rate({WAIT_BUCKETS}{{lane="{lane}"}}[{window}])))'


def rule(alert: str, expr: str, wait: str | None, severity: str, summary: str, description: str,
         **labels: str) -> dict:
    """One alerting rule as Prometheus reads it; `wait` is its `for` (None: it fires at once)."""
    return {"alert": alert, "expr": expr, **({"for": wait} if wait else {}),
            "labels": {**labels, "severity": severity},
            "annotations": {"summary": summary, "description": description}}


def lane_rules(pool: Pool) -> list[dict]:
    """The alerts of each lane the pool consumes."""
    rules = []
    for lane in pool.queues:
        selector = f'{{lane="{lane}"}}'
        capacity = pool.max_replicas * pool.replica_capacity
        if pool.min_replicas >= 1:
            no_consumer, wait, severity = f"{CONSUMERS}{selector} == 0", "2m", "critical"
            why = "the pool never scales to zero, so no worker consumes it at all"
        else:
            no_consumer, wait, severity = f"{CONSUMERS}{selector} == 0 and {DEPTH}{selector} > 0", "5m", "warning"
            why = "messages wait and no worker has come up for them (scaled to zero and not scaling up?)"
        rules += [
            rule("FBrainLaneBacklogBeyondCapacity", f"{DEPTH}{selector} > {capacity}", "10m", "warning",
                 f"{lane}: more messages waiting than {pool.max_replicas} replicas can take ({capacity})",
                 f"The {lane} backlog ({{{{ $value }}}}) is beyond what the pool takes at its largest "
                 f"({pool.max_replicas} replicas x {pool.concurrency} slots x prefetch {pool.prefetch_multiplier}): "
                 f"raise WORKER_{pool.name.upper()}_MAX_REPLICAS or find what floods the lane (/ops/).", lane=lane),
            rule("FBrainLaneWaitOverBudget", f"{wait_p95(lane)} > {pool.wait_budget_s}", "10m", "warning",
                 f"{lane}: tasks wait longer than {pool.wait_budget_s} s before they start (p95)",
                 f"Queue wait p95 on {lane} is {{{{ $value | humanizeDuration }}}}: too few slots or replicas for "
                 f"the load (WORKER_{pool.name.upper()}_CONCURRENCY), or a backlog burst.", lane=lane),
            rule("FBrainLaneNoConsumers", no_consumer, wait, severity, f"{lane}: no consumer",
                 f"The {lane} queue has no consumer: {why}. `python manage.py doctor` names the pool and what it "
                 "last said.", lane=lane),
            rule("FBrainLaneNearSoftLimit", f"sum by (lane, task) (increase({NEAR_SOFT_LIMIT}{selector}[1h])) > 0",
                 None, "warning", f"{lane}: runs came close to the {pool.soft_time_limit} s soft limit",
                 "{{ $labels.task }} took most of its soft time limit in the last hour: the next slow provider "
                 "or database turns it into a time-out.", lane=lane),
        ]
    return rules


def deployment_rules() -> list[dict]:
    """Alerts on the whole deployment, from doctor's checks and the scrape itself."""
    def doctor(check: str) -> str:
        return f'{DOCTOR}{{check="{check}"}}'

    others = "|".join(OWN_ALERT_CHECKS)
    return [
        rule("FBrainDoctorFailing", f'{DOCTOR}{{check!~"{others}"}} == {FAIL}', "5m", "warning",
             "doctor: {{ $labels.check }} fails ({{ $labels.symptom }})",
             "`python manage.py doctor` (or /ops/) says what it saw and what to do."),
        rule("FBrainBeatStale", f"{doctor('beat alive')} == {FAIL}", "2m", "critical",
             "no beat is ticking: periodic refreshes and the cleanup are not sent",
             "No beat heartbeat within twice its lease. Start `python -m workers beat` (any number may run; one "
             "leads)."),
        rule("FBrainBrokerAlarm", f"{doctor('broker alarm')} == {FAIL}", "1m", "critical",
             "RabbitMQ blocks publishers (memory or disk alarm)",
             "Clicks answer 503 until it clears; `rabbitmq-diagnostics alarms` says which."),
        rule("FBrainDeadLetters", f"{doctor('dead letters')} >= 1", "5m", "warning",
             "messages failed for good and wait in the dead-letter queue",
             "`python manage.py deadletters list`, then replay or drop them."),
        rule("FBrainBrokerUnreachable", f"{BROKER_UP} == 0", "2m", "critical",
             "the web role cannot reach RabbitMQ",
             "Nothing is enqueued: clicks answer 503. `python manage.py doctor` names the node and the error."),
    ]


def alert_rules(pools: dict[str, Pool]) -> dict:
    """The Prometheus rule file: one group per lane's pool, one for the deployment."""
    groups = [{"name": f"f_brain pool {pool.name}", "rules": lane_rules(pool)} for pool in pools.values()]
    groups.append({"name": "f_brain deployment", "rules": deployment_rules()})
    return {"groups": groups}


def _panel(panel_id: int, title: str, targets: list[tuple[str, str]], x: int, y: int, w: int = 8, unit: str = "short",
           ) -> dict:
    return {
        "id": panel_id, "type": "timeseries", "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 7, "w": w, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "none"}},
        "targets": [{"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend,
                     "datasource": {"type": "prometheus", "uid": "${datasource}"}}
                    for i, (expr, legend) in enumerate(targets)],
    }


def dashboard(pools: dict[str, Pool]) -> dict:
    """The Grafana dashboard: a row per lane (depth against capacity, consumers, throughput, wait p95), then doctor."""
    panels: list[dict] = []
    y = 0
    next_id = iter(range(1, 1000))
    for pool in pools.values():
        for lane in pool.queues:
            selector = f'{{lane="{lane}"}}'
            panels.append({"id": next(next_id), "type": "row", "title": f"Lane {lane} (pool {pool.name})",
                           "collapsed": False, "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
            y += 1
            panels.append(_panel(next(next_id), "Backlog and consumers", [
                (f"sum({DEPTH}{selector})", "ready"),
                (f"sum({CONSUMERS}{selector})", "consumers"),
                (f"vector({pool.max_replicas * pool.replica_capacity})", "capacity at max replicas")], 0, y, w=6))
            panels.append(_panel(next(next_id), "Throughput by state", [
                (f"sum by (state) (rate({TASKS_TOTAL}{selector}[5m]))", "{{state}}")], 6, y, w=6, unit="ops"))
            panels.append(_panel(next(next_id), "Queue wait and run time, p95", [
                (wait_p95(lane, "5m"), "wait p95"),
                (f'histogram_quantile(0.95, sum by (le) (rate({RUN_BUCKETS}{selector}[5m])))', "run p95"),
                (f"vector({pool.wait_budget_s})", "wait budget")], 12, y, w=6, unit="s"))
            panels.append(_panel(next(next_id), "Runs near the soft limit", [
                (f"sum by (task) (increase({NEAR_SOFT_LIMIT}{selector}[1h]))", "{{task}}")], 18, y, w=6))
            y += 7
    panels.append({"id": next(next_id), "type": "row", "title": "Doctor", "collapsed": False,
                   "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
    panels.append(_panel(next(next_id), "Doctor checks not ok (1 warn, 2 fail)", [
        (f"{DOCTOR} > 0", "{{check}}"), (f"1 - {BROKER_UP}", "broker unreachable")], 0, y + 1, w=24))
    return {
        "uid": DASHBOARD_UID, "title": "F_BRAIN lanes", "tags": ["f_brain", "celery", "rabbitmq"],
        "timezone": "utc", "editable": True, "graphTooltip": 1, "schemaVersion": 39, "version": 1,
        "time": {"from": "now-6h", "to": "now"}, "refresh": "30s",
        "templating": {"list": [{"name": "datasource", "label": "Prometheus", "type": "datasource",
                                 "query": "prometheus", "hide": 0}]},
        "annotations": {"list": []}, "links": [],
        "panels": panels,
    }


def render(pools: dict[str, Pool]) -> dict[Path, str]:
    """Each file's path and its text."""
    import yaml  # a development dependency: rendered where the code is, not in the image

    return {
        ALERTS_PATH: HEADER + yaml.safe_dump(alert_rules(pools), sort_keys=False, width=120),
        DASHBOARD_PATH: json.dumps(dashboard(pools), indent=2) + "\n",
    }
