"""``agentstream tenants`` and ``agentstream api`` as an operator runs them.

The key is printed once by ``tenants create``, works against a running
``agentstream api``, and stops working as soon as ``tenants revoke`` returns
(the running API hears the revocation through Postgres NOTIFY). The API serves
/healthz, /readyz and /metrics without a key, and its metrics carry the
``agentstream_`` prefix.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agentstream.gateway.testkit import database_url

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AGENTSTREAM_DATABASE_URL": database_url()}
    return subprocess.run(
        [sys.executable, "-m", "agentstream.cli", *args],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=120, check=False,
    )  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def api(kafka_bootstrap: str) -> Iterator[tuple[str, str]]:
    """A running ``agentstream api`` (url, topic prefix); topics deleted afterwards."""
    prefix, port = f"t{uuid.uuid4().hex[:8]}", free_port()
    kafka = ["--bootstrap", kafka_bootstrap, "--prefix", prefix, "--partitions", "4"]
    env = {**os.environ, "AGENTSTREAM_DATABASE_URL": database_url()}
    process = subprocess.Popen(
        [sys.executable, "-m", "agentstream.cli", "api", "--port", str(port), *kafka],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "agentstream api did not become ready"
            time.sleep(0.3)
        yield url, prefix
    finally:
        process.terminate()
        process.wait(timeout=30)
        subprocess.run(
            [sys.executable, "-c", (
                "import asyncio; from streams.admin import delete_topics; "
                "from streams.catalogue import Catalogue; from streams.settings import KafkaSettings; "
                f"k = KafkaSettings({kafka_bootstrap!r}, {prefix!r}, 4); "
                "asyncio.run(delete_topics(k, [s.name for s in Catalogue.from_settings(k).all()]))"
            )],
            cwd=ROOT, timeout=60, check=False,
        )  # fmt: skip


def test_tenant_lifecycle_against_a_running_api(api: tuple[str, str]) -> None:
    url, _ = api
    name = f"cli-{uuid.uuid4().hex[:8]}"
    created = cli("tenants", "create", name, "--rate", "50")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("ask_") and "shown once" in created.stderr
    assert cli("tenants", "create", name).returncode == 1  # exists
    listed = cli("tenants", "list")
    assert name in listed.stdout and key not in listed.stdout
    headers = {"Authorization": f"Bearer {key}"}
    started = httpx.post(
        f"{url}/v1/sessions", json={"agent": "demo", "input": "hi"}, headers=headers
    )
    assert started.status_code == 202, started.text
    revoked = cli("tenants", "revoke", name)
    assert revoked.returncode == 0 and "revoked 1 key" in revoked.stdout
    refused = httpx.post(
        f"{url}/v1/sessions", json={"agent": "demo", "input": "hi"}, headers=headers
    )
    assert refused.status_code == 401
    assert cli("tenants", "revoke", name).returncode == 1  # nothing left to revoke


def test_operations_endpoints_need_no_key(api: tuple[str, str]) -> None:
    url, _ = api
    assert httpx.get(f"{url}/healthz").json() == {"ok": True}
    ready = httpx.get(f"{url}/readyz").json()
    assert ready["checks"] == {"kafka": "ok", "postgres": "ok"}
    assert ready["projector"]["running"] is True
    metrics = httpx.get(f"{url}/metrics").text
    assert "agentstream_api_requests_total" in metrics
    assert "agentstream_api_request_seconds_bucket" in metrics
    document = httpx.get(f"{url}/openapi.json").json()
    assert document["openapi"].startswith("3.")
    assert httpx.get(f"{url}/v1/sessions").status_code == 401
