"""README's first command: `agentstream demo` runs sessions end to end across two
worker processes and prints what happened; `agentstream replay` then audits the log."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from streams.catalogue import Catalogue

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentstream.cli", *args],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300, check=False,
    )  # fmt: skip


def test_the_demo_runs_sessions_end_to_end_and_the_log_audits_clean(
    kafka_bootstrap: str, catalogue: Catalogue
) -> None:
    env = dict(
        os.environ,
        AGENTSTREAM_KAFKA_BOOTSTRAP=kafka_bootstrap,
        AGENTSTREAM_TOPIC_PREFIX=catalogue.prefix,
        AGENTSTREAM_PARTITIONS=str(catalogue.partitions),
    )
    demo = _cli(["demo", "--sessions", "60", "--concurrency", "16", "--port", "6470"], env)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    out = demo.stdout
    assert "60 started, 60 completed, 0 not completed" in out
    assert "SessionCompleted: 60" in out
    assert "latency:    p50" in out and "steps/s" in out
    hint = next(line for line in out.splitlines() if "agentstream replay --session" in line)
    session_id = hint.split("--session")[1].split()[0]

    one = _cli(["replay", "--session", session_id], env)
    assert one.returncode == 0, one.stderr
    assert '"status": "completed"' in one.stdout and '"problems": []' in one.stdout
    audit = _cli(["replay"], env)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert '"sessions": 60' in audit.stdout and '"with_problems": 0' in audit.stdout
