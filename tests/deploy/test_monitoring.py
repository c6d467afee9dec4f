"""Alert rules and the Grafana dashboard: rendered from the registry, checked by promtool and Grafana's schema.

`promtool` comes from Debian's prometheus package (.ci/run installs it): `check rules`
parses the file, and `test rules` runs series through the rules to show which alerts
fire and which stay quiet. The dashboard is type-checked against Grafana's published
schema (the npm package @grafana/schema, pinned in tests/deploy/grafana/).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from django.test import Client

from tests.conftest import require
from weather.instrumentation import TASK_METRICS
from workers.pools import load_pools
from workers.render import monitoring

GRAFANA_PACKAGE = Path(__file__).parent / "grafana"


def test_the_rendered_files_are_what_the_registry_renders():
    rendered = monitoring.render(load_pools({}))
    assert set(rendered) == {monitoring.ALERTS_PATH, monitoring.DASHBOARD_PATH}
    for path, text in rendered.items():
        assert path.read_text() == text, f"{path} drifted: run `python -m workers render monitoring`"


def test_a_new_lane_in_a_copy_of_the_registry_gets_its_alerts_and_its_dashboard_row():
    pools = load_pools({})
    reports = dataclasses.replace(pools["maintenance"], name="reports", queues=("reports",), max_replicas=2,
                                  concurrency=1, prefetch_multiplier=1, wait_budget_s=120)
    rules = monitoring.alert_rules({**pools, "reports": reports})
    group = next(g for g in rules["groups"] if g["name"] == "f_brain pool reports")
    alerts = {rule["alert"]: rule for rule in group["rules"]}
    assert set(alerts) == {"FBrainLaneBacklogBeyondCapacity", "FBrainLaneWaitOverBudget", "FBrainLaneNoConsumers",
                           "FBrainLaneNearSoftLimit"}
    assert alerts["FBrainLaneBacklogBeyondCapacity"]["expr"] == 'f_brain_queue_depth{lane="reports"} > 2'
    assert alerts["FBrainLaneWaitOverBudget"]["expr"].endswith("> 120")
    board = monitoring.dashboard({**pools, "reports": reports})
    assert "Lane reports (pool reports)" in [panel["title"] for panel in board["panels"] if panel["type"] == "row"]
    assert len({panel["id"] for panel in board["panels"]}) == len(board["panels"])


def test_every_metric_the_rules_read_is_exposed(db, settings):
    settings.METRICS_OPEN = True
    scraped = Client().get("/metrics").content.decode()
    # The task metrics: by what the instrumentation declares (a labelled family shows no sample before its first use).
    declared = set()
    for metric in TASK_METRICS:
        family = metric.describe()[0]
        declared |= {f"{family.name}_total"} if family.type == "counter" else {f"{family.name}_bucket"}
    for name in monitoring.METRICS_READ:
        assert name in declared or f"\n{name}" in scraped or scraped.startswith(name), name


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    require(None if path else "promtool is missing (Debian's prometheus package)", "promtool over the alert rules")
    return path


@pytest.mark.integration
def test_promtool_accepts_the_rules(promtool):
    done = subprocess.run([promtool, "check", "rules", str(monitoring.ALERTS_PATH)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {sum(len(g['rules']) for g in monitoring.alert_rules(load_pools({}))['groups'])} rules" \
        in done.stdout


def _series(name: str, labels: dict[str, str], values: str) -> dict:
    rendered = ",".join(f'{key}="{value}"' for key, value in labels.items())
    return {"series": f"{name}{{{rendered}}}", "values": values}


@pytest.mark.integration
def test_promtool_fires_what_should_fire_and_nothing_else(promtool, tmp_path):
    pools = load_pools({})
    bulk = pools["bulk"]
    bulk_capacity = bulk.max_replicas * bulk.replica_capacity
    scrape = {"job": "f_brain", "instance": "web:8000"}
    tests = {"rule_files": [str(monitoring.ALERTS_PATH)], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [
            # interactive lost its consumers; bulk has none either, but nothing waits for it (scaled to zero).
            _series("f_brain_queue_consumers", {**scrape, "lane": "interactive"}, "1 0x10"),
            _series("f_brain_queue_depth", {**scrape, "lane": "interactive"}, "0x10"),
            _series("f_brain_queue_consumers", {**scrape, "lane": "bulk"}, "0x20"),
            _series("f_brain_queue_depth", {**scrape, "lane": "bulk"}, f"0x5 {bulk_capacity + 1}x15"),
            _series("f_brain_queue_consumers", {**scrape, "lane": "maintenance"}, "0x15"),
            _series("f_brain_queue_depth", {**scrape, "lane": "maintenance"}, "0x15"),
            _series("f_brain_doctor_check", {**scrape, "symptom": "periodic tasks not triggered",
                                             "check": "beat alive"}, "0 2x10"),
            _series("f_brain_doctor_check", {**scrape, "symptom": "tasks not executed", "check": "routes"},
                    "0x2 2x10"),
            _series("f_brain_broker_up", scrape, "1x15"),
        ],
        "alert_rule_test": [
            {"eval_time": "4m", "alertname": "FBrainLaneNoConsumers", "exp_alerts": [{
                "exp_labels": {**scrape, "lane": "interactive", "severity": "critical"},
                "exp_annotations": _annotations("FBrainLaneNoConsumers", "interactive")}]},
            # bulk: no consumer and no backlog is an idle lane scaled to zero; with a backlog for 5 m, an alert.
            {"eval_time": "5m", "alertname": "FBrainLaneNoConsumers", "exp_alerts": [{
                "exp_labels": {**scrape, "lane": "interactive", "severity": "critical"},
                "exp_annotations": _annotations("FBrainLaneNoConsumers", "interactive")}]},
            {"eval_time": "11m", "alertname": "FBrainLaneNoConsumers", "exp_alerts": [
                {"exp_labels": {**scrape, "lane": "interactive", "severity": "critical"},
                 "exp_annotations": _annotations("FBrainLaneNoConsumers", "interactive")},
                {"exp_labels": {**scrape, "lane": "bulk", "severity": "warning"},
                 "exp_annotations": _annotations("FBrainLaneNoConsumers", "bulk")}]},
            # Beyond what the largest bulk deployment takes, from minute 6: pending for 10 m, then firing.
            {"eval_time": "14m", "alertname": "FBrainLaneBacklogBeyondCapacity", "exp_alerts": []},
            {"eval_time": "17m", "alertname": "FBrainLaneBacklogBeyondCapacity", "exp_alerts": [{
                "exp_labels": {**scrape, "lane": "bulk", "severity": "warning"},
                "exp_annotations": {**_annotations("FBrainLaneBacklogBeyondCapacity", "bulk"), "description":
                                    _annotations("FBrainLaneBacklogBeyondCapacity", "bulk")["description"].replace(
                                        "{{ $value }}", str(bulk_capacity + 1))}}]},
            {"eval_time": "3m", "alertname": "FBrainBeatStale", "exp_alerts": [{
                "exp_labels": {**scrape, "symptom": "periodic tasks not triggered", "check": "beat alive",
                               "severity": "critical"},
                "exp_annotations": _annotations("FBrainBeatStale")}]},
            # A failing check with an alert of its own is not FBrainDoctorFailing too.
            {"eval_time": "8m", "alertname": "FBrainDoctorFailing", "exp_alerts": [{
                "exp_labels": {**scrape, "symptom": "tasks not executed", "check": "routes", "severity": "warning"},
                "exp_annotations": {"summary": "doctor: routes fails (tasks not executed)",
                                    "description": _annotations("FBrainDoctorFailing")["description"]}}]},
            {"eval_time": "10m", "alertname": "FBrainBrokerUnreachable", "exp_alerts": []},
        ],
    }]}
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
    done = subprocess.run([promtool, "test", "rules", str(tmp_path / "tests.yml")], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def _annotations(alert: str, lane: str | None = None) -> dict:
    """An alert's annotations as rendered (they carry no template that these series would fill)."""
    for group in monitoring.alert_rules(load_pools({}))["groups"]:
        for rule in group["rules"]:
            if rule["alert"] == alert and rule["labels"].get("lane") == lane:
                return rule["annotations"]
    raise AssertionError(f"no {alert} for {lane}")


@pytest.fixture(scope="module")
def grafana_schema(tmp_path_factory) -> Path:
    """Grafana's published schema and TypeScript, installed from the npm registry at the pinned versions."""
    missing = None if shutil.which("npm") else "node and npm are missing: .ci/run installs them"
    require(missing, "Grafana's published dashboard schema")
    folder = tmp_path_factory.mktemp("grafana")
    for name in ("package.json", "package-lock.json"):
        shutil.copy(GRAFANA_PACKAGE / name, folder / name)
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=folder, check=True,
                   capture_output=True, timeout=300)
    return folder


def _type_check(folder: Path, board: dict) -> subprocess.CompletedProcess:
    """The dashboard as an object literal typed as Grafana's Dashboard: tsc refuses unknown fields and wrong types."""
    (folder / "check.ts").write_text('import type { Dashboard } from "@grafana/schema";\n'
                                     f"export const dashboard: Dashboard = {json.dumps(board, indent=1)};\n")
    return subprocess.run([str(folder / "node_modules" / ".bin" / "tsc"), "--noEmit", "--strict", "--skipLibCheck",
                           "--moduleResolution", "bundler", "--module", "esnext", "--target", "es2022", "check.ts"],
                          cwd=folder, capture_output=True, text=True, timeout=120)


@pytest.mark.integration
def test_the_dashboard_is_a_grafana_dashboard(grafana_schema):
    board = json.loads(monitoring.DASHBOARD_PATH.read_text())
    done = _type_check(grafana_schema, board)
    assert done.returncode == 0, done.stdout + done.stderr
    # The check can fail: a panel with a field Grafana does not know, or a wrong type.
    broken = json.loads(json.dumps(board))
    broken["panels"][1]["gridPos"]["h"] = "7"
    assert _type_check(grafana_schema, broken).returncode != 0
