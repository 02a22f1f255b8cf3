"""The real promtool and amtool over infra/observability: the Prometheus config and
rules parse, the rule tests pass, the dashboard's expressions parse, Alertmanager's
config is valid and routes each severity; and the rule tests fail when a threshold
moves (they can fail).

Debian's ``prometheus`` package has promtool, ``prometheus-alertmanager`` amtool.
Under CI (``CI=true``) a missing tool fails the test; elsewhere it is skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

OBSERVABILITY = Path(__file__).resolve().parents[2] / "infra" / "observability"
RULE_TESTS = sorted((OBSERVABILITY / "tests").glob("*.yml"))


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian: apt-get install {package})"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def _run(*args: str | Path, cwd: Path = OBSERVABILITY) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def _ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def promtool() -> str:
    return _tool("promtool", "prometheus")


@pytest.fixture(scope="module")
def amtool() -> str:
    return _tool("amtool", "prometheus-alertmanager")


def test_promtool_checks_the_config_and_its_rules(promtool: str) -> None:
    _ok(_run(promtool, "check", "config", "prometheus.yml"))
    result = _run(promtool, "check", "rules", "alerts.yml")
    _ok(result)
    rules = yaml.safe_load((OBSERVABILITY / "alerts.yml").read_text())
    count = sum(len(group["rules"]) for group in rules["groups"])
    assert f"SUCCESS: {count} rules found" in result.stdout


def test_promtool_rule_tests_pass(promtool: str) -> None:
    assert len(RULE_TESTS) >= 4
    result = _run(promtool, "test", "rules", *(p.relative_to(OBSERVABILITY) for p in RULE_TESTS))
    _ok(result)
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS)


def test_the_dashboards_expressions_parse(promtool: str, tmp_path: Path) -> None:
    # promtool parses expressions with Prometheus's own parser when it checks
    # recording rules; Grafana's $__rate_interval becomes a plain range.
    dashboard = json.loads((OBSERVABILITY / "grafana" / "agentstream.json").read_text())
    rules = [
        {
            "record": f"dashboard:panel{panel['id']}:{target['refId']}",
            "expr": target["expr"].replace("$__rate_interval", "5m"),
        }
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    _ok(_run(promtool, "check", "rules", path))


# Each change must make a rule test fail: the tests pin the thresholds and timings.
MUTATIONS = [
    ("AgentstreamSessionsFailing", "> 0.05", "> 0.5"),
    ("AgentstreamApiErrors", '{status=~"5.."}', '{status=~"[45].."}'),
    ("AgentstreamApiSlow", "> 5", "> 10"),
    ("AgentstreamCPUHigh", "> 0.8", "> 0.95"),
    ("AgentstreamCacheHitRateLow", "< 0.5", "< 0.25"),
    ("AgentstreamDeadLetters", "for: 0m", "for: 10m"),
    ("AgentstreamPartitionsWithoutEngine", "or absent(agentstream_engine_partitions)", ""),
    ("AgentstreamWorkersDown", 'or absent(up{job="agentstream-worker"})', ""),
]


@pytest.mark.parametrize(("alert", "old", "new"), MUTATIONS)
def test_the_rule_tests_fail_when_a_rule_changes(
    promtool: str, tmp_path: Path, alert: str, old: str, new: str
) -> None:
    text = (OBSERVABILITY / "alerts.yml").read_text()
    start = text.index(f"- alert: {alert}\n")
    end = text.find("- alert:", start + 1)
    end = len(text) if end < 0 else end
    rule = text[start:end]
    assert old in rule
    (tmp_path / "alerts.yml").write_text(text[:start] + rule.replace(old, new) + text[end:])
    (tmp_path / "tests").mkdir()
    # Only the files that test this alert (promtool takes seconds per file).
    files = [p for p in RULE_TESTS if f"alertname: {alert}\n" in p.read_text()]
    for path in files:
        shutil.copy(path, tmp_path / "tests" / path.name)
    _ok(_run(promtool, "check", "rules", "alerts.yml", cwd=tmp_path))
    result = _run(promtool, "test", "rules", *(f"tests/{p.name}" for p in files), cwd=tmp_path)
    assert result.returncode != 0
    assert f"alertname: {alert}" in result.stdout + result.stderr


def test_amtool_checks_the_alertmanager_config_and_its_routes(amtool: str) -> None:
    _ok(_run(amtool, "check-config", "alertmanager.yml"))
    routes = {}
    for severity in ("critical", "warning", "info"):
        result = _run(
            amtool,
            "config",
            "routes",
            "test",
            "--config.file=alertmanager.yml",
            f"severity={severity}",
            "alertname=AgentstreamTest",
        )
        _ok(result)
        routes[severity] = result.stdout.strip()
    assert routes == {
        "critical": "on-call-pager",
        "warning": "team-channel",
        "info": "low-priority",
    }
