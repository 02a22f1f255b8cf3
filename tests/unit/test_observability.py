"""The Prometheus config, alert rules, their promtool tests and the Grafana dashboard
under infra/observability refer only to metrics the code registers or a known
exporter serves (a renamed metric must break a test, not a dashboard nobody looks at
until the incident); the seed's alerts and views exist; every alert has a runbook
section and promtool cases that make it fire and keep it silent."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
OBSERVABILITY = ROOT / "infra" / "observability"
RUNBOOK = ROOT / "docs" / "alerts.md"
METRIC_MODULES = (
    "processors.metrics",
    "processors.executors.pool.metrics",
    "agentstream.gateway.metrics",
    "agentstream.gateway.limits",
    "agentstream.process_tuning",
    "agentstream.worker_app",
    "projections.projector",
    "streams.lag",
)
EXTERNAL = re.compile(r"up|kafka_[a-z0-9_]+")
"""Served by others: Prometheus's own `up`, the broker's JMX exporter (its names are
checked against a running broker by tests/integration/test_infra.py)."""

# PromQL words that are not metric names (operators, modifiers, literals).
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"}
_NAME = re.compile(r"(?<![\w.:$])[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects: identifiers that are not a function or
    aggregation (followed by "("), a keyword, a label, a string, a range or a number."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values, label_replace args
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges, $__rate_interval
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\b(?:group_left|group_right)\b", " ", text)
    names = set()
    for match in _NAME.finditer(text):
        if text[match.end() :].lstrip().startswith("("):
            continue
        if match.group().lower() not in _KEYWORDS:
            names.add(match.group())
    return names


def _registered() -> set[str]:
    for module in METRIC_MODULES:
        importlib.import_module(module)
    # Every sample name a collector exposes: x_total, x_bucket, x_sum, x_count, ...;
    # the default registry also holds the process collector's process_* names.
    return set(REGISTRY._names_to_collectors)


def _unknown(names: set[str]) -> set[str]:
    registered = _registered()
    return {name for name in names if name not in registered and not EXTERNAL.fullmatch(name)}


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        (OBSERVABILITY / "grafana" / "agentstream.json").read_text()
    )
    return loaded


def _dashboard_exprs() -> list[str]:
    return [t["expr"] for panel in _dashboard()["panels"] for t in panel["targets"]]


def _alert_rules() -> list[dict[str, Any]]:
    rules = yaml.safe_load((OBSERVABILITY / "alerts.yml").read_text())
    return [rule for group in rules["groups"] for rule in group["rules"]]


def _rule_tests() -> list[dict[str, Any]]:
    tests: list[dict[str, Any]] = []
    for path in sorted((OBSERVABILITY / "tests").glob("*.yml")):
        tests += yaml.safe_load(path.read_text())["tests"]
    return tests


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'sum by (le, instance) (rate(a_bucket{job=~"x-.*"}[$__rate_interval]))',
            {"a_bucket"},
        ),
        ("max(a) - sum(b) > 0 or absent(c) or sum(d) == 1e-9", {"a", "b", "c", "d"}),
        ('label_replace(increase(x_total[5m]), "source", "p", "stream", ".*") > 0', {"x_total"}),
        ("max by (instance) (a) / on (instance) group_left max by (instance) (b)", {"a", "b"}),
        ("rate(x[5m] offset 1h) > bool 0.5 unless up", {"x", "up"}),
    ],
)
def test_the_expression_reader_finds_the_metric_names(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


@pytest.mark.parametrize("name", ["agentstream_engine_batch_secondz_bucket", "agentstream_nope"])
def test_the_check_catches_a_misspelt_metric(name: str) -> None:
    expr = f"histogram_quantile(0.99, sum by (le) (rate({name}[5m]))) > 0.25"
    assert _unknown(metric_names(expr)) == {name}


def test_the_dashboard_queries_only_exported_metrics() -> None:
    exprs = _dashboard_exprs()
    assert len(exprs) >= 30
    used = {name for expr in exprs for name in metric_names(expr)}
    assert _unknown(used) == set()
    assert {"agentstream_engine_batch_seconds_bucket", "agentstream_dlq_records_total"} <= used


SEED_VIEWS = {
    # panel title: metrics it must plot
    "Request rate": {"agentstream_api_requests_total", "agentstream_llm_requests_total"},
    "Error rate": {"agentstream_engine_events_total", "agentstream_api_requests_total"},
    "p99 latency": {
        "agentstream_api_request_seconds_bucket",
        "agentstream_session_duration_seconds_bucket",
    },
    "Utilisation": {
        "process_cpu_seconds_total",
        "agentstream_executor_slots",
        "agentstream_engine_sessions_limit",
    },
    "Cache hit ratio": {"agentstream_llm_cache_requests_total"},
    "Capacity (steps/s)": {"agentstream_worker_capacity_steps_per_second"},
    "Headroom": {"agentstream_worker_headroom_ratio"},
    "Consumer lag (records)": {"agentstream_consumer_lag_records"},
}


def test_every_seed_view_has_a_panel() -> None:
    panels = {panel["title"]: panel for panel in _dashboard()["panels"]}
    for title, needed in SEED_VIEWS.items():
        assert title in panels, title
        plotted = {n for t in panels[title]["targets"] for n in metric_names(t["expr"])}
        assert needed <= plotted, (title, needed - plotted)
    ids = [panel["id"] for panel in _dashboard()["panels"]]
    assert len(ids) == len(set(ids))


def test_every_alert_names_exported_metrics_and_says_what_happened() -> None:
    rules = _alert_rules()
    assert len({rule["alert"] for rule in rules}) == len(rules)
    for rule in rules:
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        assert _unknown(names) == set(), rule["alert"]
        assert "for" in rule, rule["alert"]
        assert rule["annotations"]["summary"]
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}


SEED_ALERTS = {
    # alert: (severity, the threshold at the end of its expression)
    "AgentstreamSessionsFailing": ("critical", "> 0.05"),
    "AgentstreamApiErrors": ("critical", "> 0.05"),
    "AgentstreamLLMErrors": ("critical", "> 0.05"),
    "AgentstreamApiSlow": ("warning", "> 5"),
    "AgentstreamStepsSlow": ("warning", "> 5"),
    "AgentstreamCPUHigh": ("warning", "> 0.8"),
    "AgentstreamCacheHitRateLow": ("warning", "< 0.5"),
}


def test_the_seed_alerts_have_the_seed_thresholds() -> None:
    rules = {rule["alert"]: rule for rule in _alert_rules()}
    for name, (severity, threshold) in SEED_ALERTS.items():
        assert rules[name]["labels"]["severity"] == severity, name
        assert rules[name]["expr"].strip().endswith(threshold), name
    # ... and the ones the issue found missing
    for name in (
        "AgentstreamConsumerLagGrowing",
        "AgentstreamDeadLetters",
        "AgentstreamLLMBreakerOpen",
        "AgentstreamPartitionsWithoutEngine",
        "AgentstreamWorkersDown",
    ):
        assert name in rules
    assert "absent(up{" in rules["AgentstreamWorkersDown"]["expr"]


def test_every_alert_has_a_runbook_section() -> None:
    headings = {
        line[3:].strip().lower()
        for line in RUNBOOK.read_text().splitlines()
        if line.startswith("## ")
    }
    alerts = {rule["alert"] for rule in _alert_rules()}
    for rule in _alert_rules():
        page, _, anchor = rule["annotations"]["runbook"].partition("#")
        assert page == "docs/alerts.md", rule["alert"]
        assert anchor == rule["alert"].lower(), rule["alert"]
    assert headings == {alert.lower() for alert in alerts}


def test_every_alert_has_promtool_cases_that_fire_and_that_stay_silent() -> None:
    fires: set[str] = set()
    silent: set[str] = set()
    used: set[str] = set()
    for case in _rule_tests():
        for series in case["input_series"]:
            used |= metric_names(series["series"])
        for check in case["alert_rule_test"]:
            (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    alerts = {rule["alert"] for rule in _alert_rules()}
    assert alerts - fires == set()
    assert alerts - silent == set()
    # the input series are the metrics the code exports, not look-alikes
    assert _unknown(used) == set()


def test_the_worker_and_executor_counters_alerted_on_exist_before_their_first_increment() -> None:
    _registered()
    value = REGISTRY.get_sample_value
    for source, reason in (("engine", "rejected"), ("llm", "error"), ("tools", "undecodable")):
        labels = {"source": source, "reason": reason}
        assert value("agentstream_dlq_records_total", labels) is not None, labels
    assert value("agentstream_engine_events_total", {"type": "SessionFailed"}) is not None
    labels = {"type": "StartSession", "outcome": "error"}
    assert value("agentstream_engine_commands_total", labels) is not None


def test_prometheus_scrapes_the_workers_and_the_gateway_with_the_rules() -> None:
    config = yaml.safe_load((OBSERVABILITY / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"agentstream-worker", "agentstream-gateway", "kafka-broker"}
    assert all(job["metrics_path"] == "/metrics" for job in jobs.values())
    # the jobs the rules name are the jobs scraped
    named = {m for rule in _alert_rules() for m in re.findall(r'job=~?"([^"]+)"', rule["expr"])}
    for job in named:
        assert any(re.fullmatch(job, name) for name in jobs), job
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]


def test_alertmanager_routes_each_severity_the_rules_use() -> None:
    config = yaml.safe_load((OBSERVABILITY / "alertmanager.yml").read_text())
    receivers = {receiver["name"] for receiver in config["receivers"]}
    routed = {}
    for route in config["route"]["routes"]:
        (matcher,) = route["matchers"]
        routed[matcher] = route["receiver"]
        assert route["receiver"] in receivers
    severities = {rule["labels"]["severity"] for rule in _alert_rules()}
    assert {f'severity="{s}"' for s in severities} <= set(routed)
    assert routed['severity="critical"'] != routed['severity="warning"']
