"""A real ``agentstream worker``'s probes: /readyz turns 200 once its partitions are
rebuilt and Kafka and Postgres answer, /livez is 200, /healthz keeps its document; a
worker whose event loop is held (the whole process stopped with SIGSTOP, longer than
AGENTSTREAM_LIVEZ_LOOP_BLOCKED_S) answers the probe that waited 503 naming the block,
and 200 again right after."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from agentstream.worker_processes import start_worker, wait_until_owned
from streams.catalogue import Catalogue
from tests.integration.engine_kit import kafka_settings

pytestmark = pytest.mark.integration

PORT = 6191


def probe(path: str, timeout_s: float = 2.0) -> tuple[int, dict[str, Any]]:
    """Status and JSON body of GET ``path`` on the worker (503 included)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{PORT}{path}", timeout=timeout_s) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def wait_for(path: str, status: int, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    last: tuple[int, dict[str, Any]] | None = None
    while time.monotonic() < deadline:
        try:
            last = probe(path)
        except OSError:  # not listening yet
            last = None
        if last is not None and last[0] == status:
            return last[1]
        time.sleep(0.2)
    raise AssertionError(f"{path} never answered {status}; last: {last}")


async def test_a_real_workers_probes(
    kafka_bootstrap: str, catalogue: Catalogue, tmp_path: Path
) -> None:
    kafka = kafka_settings(catalogue, kafka_bootstrap)
    env = dict(os.environ, AGENTSTREAM_LIVEZ_LOOP_BLOCKED_S="1")
    worker = start_worker(kafka, PORT, tmp_path / "logs", env=env)
    try:
        await asyncio.to_thread(wait_until_owned, [worker], catalogue.partitions, 90.0)
        ready = await asyncio.to_thread(wait_for, "/readyz", 200, 30.0)
        assert ready == {"ok": True, "problems": [], "checks": {"kafka": "ok", "postgres": "ok"}}
        assert await asyncio.to_thread(probe, "/livez") == (200, {"ok": True, "problems": []})
        status, health = await asyncio.to_thread(probe, "/healthz")
        assert status == 200 and health["ok"] is True and health["live"] is True
        assert health["engine"]["partitions"] == list(range(catalogue.partitions))
        assert health["engine"]["rebuilding"] == []

        # Hold the worker's event loop: stop the whole process for 2.5 s (its group's
        # session timeout is 10 s, so it keeps its partitions). The probe sent meanwhile
        # is answered once it runs again.
        worker.kill(signal.SIGSTOP)
        try:
            waiting = asyncio.create_task(asyncio.to_thread(probe, "/livez", 15.0))
            await asyncio.sleep(2.5)
        finally:
            worker.kill(signal.SIGCONT)
        status, body = await waiting
        assert status == 503, body
        assert body["ok"] is False and "event loop" in body["problems"][0], body
        assert "(limit 1 s)" in body["problems"][0]
        after = await asyncio.to_thread(wait_for, "/livez", 200, 3.0)
        assert after == {"ok": True, "problems": []}
    finally:
        assert worker.stop() == 0, worker.log_path.read_text()[-3000:]
