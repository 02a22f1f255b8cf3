"""A session load: start N sessions and watch them end.

Closed loop (at most C unfinished at once) or open loop (``rate``: sessions
started at a fixed rate, whatever the system does, which is how latency at a
given load is measured). Used by ``agentstream demo`` and the engine benchmark.
It produces StartSession commands to the inbox and reads the events topic
(read_committed) from its end at the start, so it measures what a client sees:
from the moment a command is sent to the moment the session's terminal event is
readable.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aiokafka import TopicPartition

from schemas import TERMINAL_EVENT_NAMES, Codec
from streams.catalogue import Catalogue
from streams.clients import new_consumer, new_producer
from streams.partitioner import session_partition
from streams.producer import type_headers
from streams.settings import KafkaSettings

DEMO_INPUTS: tuple[str, ...] = (
    "What is {a}*{b} and the weather in {city}?",
    "What is {a}+{b}?",
    "What's the weather in {city}?",
    "Compute ({a}+{b})*2 please.",
)
CITIES = ("Paris", "Lisbon", "Oslo", "Tokyo", "Lima", "Nairobi", "Toronto", "Sydney")


def _type_of(headers: Sequence[tuple[str, bytes]]) -> str:
    for key, value in headers:
        if key == "type":
            return value.decode()
    return ""


def demo_input(i: int) -> str:
    """A varied, deterministic demo prompt (arithmetic, weather, or both)."""
    template = DEMO_INPUTS[i % len(DEMO_INPUTS)]
    return template.format(a=i % 97 + 2, b=i % 13 + 3, city=CITIES[i % len(CITIES)])


@dataclass
class LoadReport:
    """What a load run saw."""

    sessions: int
    """Sessions started."""
    seconds: float
    """From the first StartSession sent to the last terminal event read."""
    outcomes: dict[str, int] = field(default_factory=dict)
    """Terminal event name → count."""
    latencies_s: list[float] = field(default_factory=list)
    """Per session: StartSession sent → terminal event read."""
    events: int = 0
    """Events read for these sessions."""
    llm_steps: int = 0
    """LLMCallCompleted + LLMCallFailed events."""
    tool_steps: int = 0
    """ToolCallCompleted + ToolCallFailed events."""
    sample: tuple[str, str] | None = None
    """(session id, final output) of one completed session."""
    timed_out: int = 0
    """Sessions without a terminal event when the run gave up."""
    run_id: str = ""
    """Part of every session id of this run (``<agent>-<run_id>-<i>``)."""

    @property
    def steps(self) -> int:
        """Agent steps: model calls plus tool calls that came back."""
        return self.llm_steps + self.tool_steps

    def percentile(self, q: float) -> float:
        if not self.latencies_s:
            return float("nan")
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_sessions(
    kafka: KafkaSettings,
    sessions: int,
    *,
    concurrency: int = 64,
    agent: str = "demo",
    tenant: str = "demo",
    timeout_s: float = 300.0,
    progress: Callable[[str], None] | None = None,
    make_input: Callable[[int], str] = demo_input,
    rate: float | None = None,
) -> LoadReport:
    """Start ``sessions`` sessions, at most ``concurrency`` unfinished at once, or
    ``rate`` per second when given (open loop: ``concurrency`` is then ignored)."""
    catalogue = Catalogue.from_settings(kafka)
    codec = Codec()
    run_id = uuid.uuid4().hex[:8]
    # The gateway's and the CLI's producer settings (5 ms linger): commands reach the
    # inbox batched as they do in production, and the load generator, which shares
    # the CPUs with what it measures, sends a request per linger, not per session.
    producer = new_producer(kafka)
    consumer = new_consumer(kafka, fetch_max_wait_ms=kafka.fetch_max_wait_ms)
    await producer.start()
    await consumer.start()
    partitions = [TopicPartition(catalogue.events.name, p) for p in range(kafka.partitions)]
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    for tp in partitions:
        await consumer.position(tp)  # resolve the end now, before anything is sent

    report = LoadReport(sessions=sessions, seconds=0.0, run_id=run_id)
    sent_at: dict[str, float] = {}
    finished = asyncio.Event()
    slots = asyncio.Semaphore(concurrency)
    started = time.perf_counter()

    async def send_all() -> None:
        for i in range(sessions):
            if rate is None:
                await slots.acquire()
            else:
                # Each start at its planned time: a late start is not made up by
                # waiting less later (no coordinated omission).
                delay = started + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            session_id = f"{agent}-{run_id}-{i}"
            record = {
                "event_id": str(uuid.uuid4()),
                "session_id": session_id,
                "tenant_id": tenant,
                "time_ms": int(time.time() * 1000),
                "causation_id": None,
                "correlation_id": None,
                "agent": agent,
                "input": make_input(i),
                "keep_open": False,
                "idle_timeout_ms": 0,
                "metadata": {"run": run_id},
            }
            sent_at[session_id] = time.perf_counter()
            await producer.send(
                catalogue.inbox.name,
                codec.encode("StartSession", record),
                key=session_id.encode(),
                partition=session_partition(session_id, kafka.partitions),
                headers=type_headers("StartSession"),
            )

    async def watch() -> None:
        done = 0
        last_print = time.perf_counter()
        while done < sessions:
            batches = await consumer.getmany(timeout_ms=100, max_records=10_000)
            now = time.perf_counter()
            for records in batches.values():
                for record in records:
                    # The type header and the key say what and whose it is; only a
                    # terminal event is decoded (the load generator shares the CPUs
                    # with what it measures: decoding every event was a fifth of it).
                    session_id = record.key.decode() if record.key is not None else ""
                    if session_id not in sent_at:
                        continue
                    name = _type_of(record.headers)
                    report.events += 1
                    if name in ("LLMCallCompleted", "LLMCallFailed"):
                        report.llm_steps += 1
                    elif name in ("ToolCallCompleted", "ToolCallFailed"):
                        report.tool_steps += 1
                    elif name in TERMINAL_EVENT_NAMES:
                        report.outcomes[name] = report.outcomes.get(name, 0) + 1
                        report.latencies_s.append(now - sent_at[session_id])
                        if name == "SessionCompleted" and report.sample is None:
                            _, event = codec.decode(record.value)
                            report.sample = (session_id, str(event.get("output")))
                        done += 1
                        if rate is None:
                            slots.release()
            if progress is not None and now - last_print >= 1.0:
                last_print = now
                ended_per_s = done / (now - started)
                progress(f"  {done}/{sessions} sessions ended ({ended_per_s:,.0f}/s)")
        finished.set()

    watcher = asyncio.create_task(watch())
    sender = asyncio.create_task(send_all())
    try:
        await asyncio.wait_for(finished.wait(), timeout_s)
    except TimeoutError:
        report.timed_out = sessions - sum(report.outcomes.values())
    finally:
        report.seconds = time.perf_counter() - started
        for task in (watcher, sender):
            task.cancel()
        await asyncio.gather(watcher, sender, return_exceptions=True)
        await producer.stop()
        await consumer.stop()
    return report
