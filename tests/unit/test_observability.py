"""The Prometheus config, alert rules and Grafana dashboard under infra/observability
refer only to metrics the code registers (a renamed metric must break a test, not a
dashboard nobody looks at until the incident)."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

OBSERVABILITY = Path(__file__).resolve().parents[2] / "infra" / "observability"
METRIC_MODULES = (
    "processors.metrics",
    "processors.executors.pool.metrics",
    "agentstream.gateway.metrics",
    "agentstream.gateway.limits",
    "agentstream.process_tuning",
    "agentstream.worker_app",
    "projections.projector",
)
NAME = re.compile(r"\bagentstream_[a-z0-9_]+")


def _registered() -> set[str]:
    for module in METRIC_MODULES:
        importlib.import_module(module)
    # Every sample name a collector exposes: x_total, x_bucket, x_sum, x_count, ...
    return set(REGISTRY._names_to_collectors)


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads((OBSERVABILITY / "grafana" / "agentstream.json").read_text())
    return [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]


def _alert_rules() -> list[dict[str, Any]]:
    rules = yaml.safe_load((OBSERVABILITY / "alerts.yml").read_text())
    return [rule for group in rules["groups"] for rule in group["rules"]]


def test_the_dashboard_queries_only_registered_metrics() -> None:
    registered = _registered()
    exprs = _dashboard_exprs()
    assert len(exprs) >= 10
    used = {name for expr in exprs for name in NAME.findall(expr)}
    assert used - registered == set()
    # the engine's hot path is on it
    assert {"agentstream_engine_batch_seconds_bucket", "agentstream_dlq_records_total"} <= used


def test_every_alert_names_registered_metrics_and_says_what_happened() -> None:
    registered = _registered()
    rules = _alert_rules()
    assert len({rule["alert"] for rule in rules}) == len(rules)
    for rule in rules:
        names = set(NAME.findall(rule["expr"]))
        assert names, rule["alert"]
        assert names - registered == set(), rule["alert"]
        assert rule["annotations"]["summary"]
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}


def test_prometheus_scrapes_the_workers_and_the_gateway_with_the_rules() -> None:
    config = yaml.safe_load((OBSERVABILITY / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"agentstream-worker", "agentstream-gateway", "kafka-broker"}
    assert all(job["metrics_path"] == "/metrics" for job in jobs.values())


@pytest.mark.parametrize("name", ["agentstream_engine_batch_secondz_bucket", "agentstream_nope"])
def test_the_check_catches_a_misspelt_metric(name: str) -> None:
    expr = f"histogram_quantile(0.99, sum by (le) (rate({name}[5m]))) > 0.25"
    assert set(NAME.findall(expr)) - _registered() == {name}
