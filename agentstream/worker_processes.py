"""Start and stop ``agentstream worker`` processes (the demo, chaos tests, benchmarks)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.settings import KafkaSettings


@dataclass
class WorkerProcess:
    """One running ``agentstream worker``."""

    process: subprocess.Popen[bytes]
    """The child process."""
    port: int
    """Its health and metrics port."""
    log_path: Path
    """Where its stdout and stderr go."""

    def health(self) -> dict[str, Any] | None:
        """The /healthz document, or None when it does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as r:
                loaded: dict[str, Any] = json.loads(r.read())
                return loaded
        except (OSError, ValueError):
            return None

    def engine_partitions(self) -> list[int]:
        health = self.health() or {}
        engine = health.get("engine") or {}
        return list(engine.get("partitions", []))

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)

    def stop(self, timeout_s: float = 20.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout_s``; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)


def start_worker(
    kafka: KafkaSettings,
    port: int,
    log_dir: Path,
    *,
    roles: str = "engine,llm,tools",
    extra_args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> WorkerProcess:
    """Start ``python -m agentstream worker`` with ``kafka``'s settings."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"worker-{kafka.topic_prefix}-{port}.log"
    child_env = dict(os.environ if env is None else env)
    child_env.update(
        AGENTSTREAM_KAFKA_BOOTSTRAP=kafka.bootstrap,
        AGENTSTREAM_TOPIC_PREFIX=kafka.topic_prefix,
        AGENTSTREAM_PARTITIONS=str(kafka.partitions),
        AGENTSTREAM_REPLICATION_FACTOR=str(kafka.replication_factor),
        **kafka.security.environ(),
    )
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "agentstream", "worker", "--role", roles, "--port", str(port),
             *extra_args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=child_env,
        )  # fmt: skip
    return WorkerProcess(process, port, log_path)


def wait_until_owned(
    workers: list[WorkerProcess], partitions: int, timeout_s: float = 90.0
) -> None:
    """Wait until the engines of ``workers`` own all ``partitions`` between them, once each,
    and (when there are enough partitions) every worker owns at least one."""
    deadline = time.monotonic() + timeout_s
    seen: list[int] = []
    while time.monotonic() < deadline:
        for worker in workers:
            if worker.process.poll() is not None:
                raise RuntimeError(
                    f"worker on port {worker.port} exited with {worker.process.returncode};"
                    f" see {worker.log_path}"
                )
        owned = [worker.engine_partitions() for worker in workers]
        seen = sorted(p for parts in owned for p in parts)
        everyone = len(workers) > partitions or all(owned)
        if seen == list(range(partitions)) and everyone:
            return
        time.sleep(0.25)
    raise TimeoutError(
        f"engines own {seen} after {timeout_s:.0f} s, not all {partitions} partitions;"
        f" see {', '.join(str(w.log_path) for w in workers)}"
    )
