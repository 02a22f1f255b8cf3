"""The agentstream worker: a faust-streaming App hosting the engine and executors.

faust is the chassis (docs/architecture.md, "Where faust fits"): the App
and its service lifecycle, signal handling, the web server for the probes
(``/livez``, ``/readyz``, ``/healthz``; docs/health.md) and ``/metrics``, and
low-volume agents (here: the DLQ watcher). The per-event
hot path does not run through faust: the session engine and the executors are
aiokafka batch loops started as services of the App.

Roles: ``engine`` (inbox → events), ``llm`` (llm-calls → inbox results),
``tools`` (tool-calls → inbox results); any mix per process.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faust
import mode
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest

from agentstream.process_tuning import (
    CapacityMeter,
    LoopWatch,
    freeze_startup_objects,
    gc_threshold_from_env,
    install_event_loop_policy,
    loop_blocked_after_from_env,
    tune_gc,
    watch_event_loop_lag,
)
from processors.agents.catalog import AgentCatalog
from processors.engine.service import SessionEngine
from processors.executors.llm_executor import LLMExecutor
from processors.executors.tool_runner import ToolRunner
from processors.executors.work_executor import ResultProducer, WorkExecutor
from processors.metrics import steps_done
from processors.settings import EngineSettings, ExecutorSettings
from streams.catalogue import Catalogue
from streams.clients import new_admin
from streams.consumer import GROUP_HEARTBEAT_INTERVAL_MS, GROUP_SESSION_TIMEOUT_MS
from streams.dlq import ERROR, ORIGIN_TOPIC, REASON, SOURCE
from streams.settings import KafkaSettings

log = logging.getLogger(__name__)

ROLES: tuple[str, ...] = ("engine", "llm", "tools")
CHECK_TIMEOUT_S = 2.0
"""Longest a readiness check of Kafka or Postgres may take before it counts as failed."""

DLQ_SEEN = Counter(
    "agentstream_dlq_seen_total",
    "Dead letters observed on the DLQ topic (by the worker's DLQ watcher).",
    ["source", "reason"],
)


@dataclass
class Components:
    """What one worker process runs; built before the App so tests can reuse it."""

    kafka: KafkaSettings
    agents: AgentCatalog
    roles: Sequence[str]
    engine: SessionEngine | None = None
    executors: list[WorkExecutor] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        kafka: KafkaSettings,
        agents: AgentCatalog,
        roles: Sequence[str],
        *,
        engine_settings: EngineSettings | None = None,
        executor_settings: ExecutorSettings | None = None,
        fail_tools: bool = False,
    ) -> Components:
        unknown = [role for role in roles if role not in ROLES]
        if unknown:
            raise ValueError(f"unknown role(s) {unknown}; choose from {', '.join(ROLES)}")
        catalogue = Catalogue.from_settings(kafka)
        built = cls(kafka, agents, roles)
        if "engine" in roles:
            built.engine = SessionEngine(
                kafka=kafka, settings=engine_settings or EngineSettings.from_env(), agents=agents
            )
        executor_settings = executor_settings or ExecutorSettings.from_env()
        results = ResultProducer(kafka)  # one producer for both executors' results
        if "llm" in roles:  # the LLM pool: providers, routing, limits, cache, deltas
            built.executors.append(
                LLMExecutor(kafka=kafka, agents=agents, settings=executor_settings, results=results)
            )
        if "tools" in roles:  # allow-list, timeouts, output limit, sandbox
            built.executors.append(
                WorkExecutor(
                    name="tools",
                    kafka=kafka,
                    topic=catalogue.tool_calls,
                    handler=ToolRunner(agents, fail_all=fail_tools).handler(),
                    settings=executor_settings,
                    results=results,
                )
            )
        return built

    async def start(self) -> None:
        if self.engine is not None:
            await self.engine.start()
        for executor in self.executors:
            await executor.start()

    async def stop(self) -> None:
        for executor in self.executors:
            await executor.stop()
        if self.engine is not None:
            await self.engine.stop()

    def liveness(self, loop: LoopWatch | None = None) -> list[str]:
        """Why this process should be restarted (empty: it should not): its event loop
        does not run, or its engine cannot make progress by itself."""
        problems: list[str] = []
        blocked = loop.problem() if loop is not None else None
        if blocked is not None:
            problems.append(blocked)
        if self.engine is not None:
            problems += self.engine.liveness()
        return problems

    async def readiness(self) -> tuple[list[str], dict[str, str]]:
        """Why this process cannot do its job now, and each dependency check's outcome:
        its engine's partitions are rebuilt, Kafka answers and (engine) Postgres does."""
        problems = self.engine.readiness() if self.engine is not None else []
        checks = {"kafka": self._check_kafka()}
        if self.engine is not None:
            checks["postgres"] = self.engine.check_postgres()
        outcomes: dict[str, str] = {}
        for name, check in checks.items():
            try:
                await asyncio.wait_for(check, CHECK_TIMEOUT_S)
                outcomes[name] = "ok"
            except Exception as error:
                outcomes[name] = f"unavailable: {type(error).__name__}"
                problems.append(f"{name} unavailable: {type(error).__name__}: {error}")
        return problems, outcomes

    async def _check_kafka(self) -> None:
        if self.engine is not None:
            await self.engine.check_kafka()
            return
        admin = new_admin(self.kafka, request_timeout_ms=int(CHECK_TIMEOUT_S * 1000))
        await admin.start()  # executors only: a short-lived client of its own
        try:
            await admin.list_topics()
        finally:
            await admin.close()

    def health(self) -> dict[str, Any]:
        report: dict[str, Any] = {
            "roles": list(self.roles),
            "process": {
                "event_loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
                "gc_threshold": list(gc.get_threshold()),
                "gc_frozen_objects": gc.get_freeze_count(),
            },
        }
        if self.engine is not None:
            report["engine"] = {
                "partitions": sorted(self.engine.partitions),
                "rebuilding": self.engine.owned.rebuilding,
                "lanes_given_up": self.engine.owned.gave_up,
                "sessions_in_memory": sum(len(p.cache) for p in self.engine.partitions.values()),
                "recoveries": [
                    {
                        "partition": r.partition,
                        "checkpoint": r.checkpoint,
                        "end_offset": r.end_offset,
                        "events_replayed": r.events_replayed,
                        "seconds": round(r.seconds, 4),
                    }
                    for r in self.engine.recoveries[-64:]
                ],
            }
        for executor in self.executors:
            stats = executor.stats()
            report[executor.name] = {
                "in_flight": stats.in_flight,
                "finished": stats.finished,
                "peak_in_flight": stats.peak_in_flight,
            }
        return report


def build_app(components: Components, *, web_port: int, data_dir: Path) -> faust.App:
    """The faust App hosting ``components`` (a service), health, metrics and the DLQ watcher."""
    kafka = components.kafka
    catalogue = Catalogue.from_settings(kafka)
    loop_watch = LoopWatch(loop_blocked_after_from_env(os.environ))
    app = faust.App(
        f"{kafka.topic_prefix}.worker",
        broker=[f"kafka://{server}" for server in kafka.bootstrap.split(",")],
        broker_credentials=kafka.security.faust_credentials(),  # as every client of ours
        store="memory://",
        web_host="127.0.0.1",
        web_port=web_port,
        datadir=str(data_dir),
        topic_replication_factor=kafka.replication_factor,
        topic_partitions=1,
        producer_acks=-1,
        # Our own consumers handle the hot path; faust's consumer only feeds the DLQ
        # watcher, so keep it cheap.
        broker_commit_every=100,
        # faust closes its consumer's client before its coordinator, so a stopping
        # worker never sends LeaveGroup; with faust's 60 s default session the next
        # start waited up to a minute for the old member to expire (`agentstream demo`
        # twice in a row: "ready in" 4-61 s, now 9 s). Time it as our own groups.
        broker_session_timeout=GROUP_SESSION_TIMEOUT_MS / 1000,
        broker_heartbeat_interval=GROUP_HEARTBEAT_INTERVAL_MS / 1000,
    )

    class ComponentsService(mode.Service):
        async def on_start(self) -> None:
            # faust leaves the root logger at DEBUG and filters in its handler, so
            # every aiokafka debug call built a LogRecord (visible in py-spy profiles
            # of a busy worker). Filter at the loggers instead.
            level = logging.getLogger().getEffectiveLevel()
            handler_levels = [h.level for h in logging.getLogger().handlers] or [level]
            for name in ("aiokafka", "faust", "mode", "processors", "agentstream"):
                logging.getLogger(name).setLevel(max(min(handler_levels), logging.INFO))
            # The heartbeat first: a start that blocks the loop shows on /livez.
            capacity = CapacityMeter(steps_done(components.roles))
            self._lag_watch = asyncio.create_task(
                watch_event_loop_lag(capacity=capacity, beats=loop_watch), name="loop-lag"
            )
            loop_watch.start_thread()
            await components.start()
            freeze_startup_objects()

        async def on_stop(self) -> None:
            watch = getattr(self, "_lag_watch", None)
            if watch is not None:
                watch.cancel()
            loop_watch.stop_thread()
            await components.stop()

    app.service(ComponentsService)

    dlq_topic = app.topic(catalogue.dlq.name, key_serializer="raw", value_serializer="raw")

    @app.agent(dlq_topic)
    async def watch_dlq(stream: Any) -> None:
        async for event in stream.events():
            headers = dict(event.message.headers or ())
            source = headers.get(SOURCE, b"?").decode()
            reason = headers.get(REASON, b"?").decode()
            DLQ_SEEN.labels(source, reason).inc()
            log.warning(
                "dead letter from %s (%s): %s",
                headers.get(ORIGIN_TOPIC, b"?").decode(),
                reason,
                headers.get(ERROR, b"").decode(errors="replace"),
            )

    @app.page("/livez")
    async def livez(web: Any, request: Any) -> Any:
        problems = components.liveness(loop_watch)
        return web.json({"ok": not problems, "problems": problems}, status=503 if problems else 200)

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        problems, checks = await components.readiness()
        return web.json(
            {"ok": not problems, "problems": problems, "checks": checks},
            status=503 if problems else 200,
        )

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        # Informational, always 200 (scripts read its partitions): /livez and /readyz judge.
        problems = components.liveness(loop_watch)
        return web.json({"ok": True, "live": not problems, "problems": problems,
                         **components.health()})  # fmt: skip

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    return app


def run_worker(components: Components, *, web_port: int, data_dir: Path, loglevel: str) -> int:
    """Run the worker until SIGTERM/SIGINT (faust's Worker owns the loop and signals)."""
    install_event_loop_policy(os.environ)
    tune_gc(gc_threshold_from_env(os.environ))
    app = build_app(components, web_port=web_port, data_dir=data_dir)
    os.makedirs(data_dir, exist_ok=True)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()
    return 0
