"""The LLM executor alone on the real broker: deltas while a call streams, failures as results.

Work items are produced straight to ``llm-calls``; the executor answers
through the pool from the fake OpenAI server, deltas go to ``deltas`` keyed by
session id, results to ``inbox``. Bad answers and bad work items become
failed results with the reason, and the executor goes on.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from processors.agents.catalog import (
    AgentCatalog,
    AgentConfig,
    EndpointConfig,
    ModelConfig,
    Prices,
    builtin_catalog,
)
from processors.agents.model_types import ChatMessage, prompt_hash
from processors.executors.llm_executor import LLMExecutor
from processors.executors.pool import PoolSettings
from streams.catalogue import Catalogue
from streams.partitioner import session_partition
from tests.integration.engine_kit import Log, kafka_settings, produce, read_topic
from tests.pool_servers import FakeModelServer, Raw, Reply

pytestmark = pytest.mark.integration

ANSWER = "Streaming is when the words arrive one piece at a time, like this."


def _catalog(server: FakeModelServer) -> AgentCatalog:
    base = builtin_catalog()
    remote = ModelConfig(
        "remote",
        "round_robin",
        (EndpointConfig(provider="openai", model="fake", base_url=server.base_url),),
        prices=Prices(input_per_mtok=1.0, output_per_mtok=2.0, cached_input_per_mtok=0.5),
    )
    agents = {**base.agents, "talker": AgentConfig(name="talker", model="remote")}
    return AgentCatalog(agents, {**base.models, "remote": remote}, base.tools)


def _work(session_id: str, text: str, model: str = "remote") -> tuple[str, dict[str, Any]]:
    messages = (ChatMessage("user", text),)
    return "LLMCallWork", {
        "event_id": str(uuid.uuid4()),
        "session_id": session_id,
        "tenant_id": "acme",
        "time_ms": int(time.time() * 1000),
        "causation_id": None,
        "correlation_id": "corr",
        "call_id": f"call-{session_id}",
        "agent": "talker",
        "model": model,
        "step": 1,
        "prompt_hash": prompt_hash(model, messages),
        "messages": [m.to_record() for m in messages],
        "tools": [],
        "deadline_ms": 0,
    }


async def _results(kafka: Any, catalogue: Catalogue, count: int) -> Log:
    deadline = time.monotonic() + 30
    while True:
        log = await read_topic(kafka, catalogue.inbox.name)
        if len(log.records) >= count or time.monotonic() > deadline:
            return log
        await asyncio.sleep(0.2)


async def test_deltas_stream_to_the_deltas_topic_and_the_text_lands_in_the_result(
    kafka_bootstrap: str, catalogue: Catalogue
) -> None:
    kafka = kafka_settings(catalogue, kafka_bootstrap)
    server = await FakeModelServer(
        "openai", default=Reply(ANSWER, usage=(1000, 200, 400), chunk_chars=7)
    ).start()
    executor = LLMExecutor(
        kafka=kafka, agents=_catalog(server), pool_settings=PoolSettings(stream_deltas=True)
    )
    await executor.start()
    try:
        await produce(
            kafka, catalogue.llm_calls.name, [_work(f"s{i}", "Explain") for i in range(3)]
        )
        inbox = await _results(kafka, catalogue, 3)
        deltas = await read_topic(kafka, catalogue.deltas.name)
    finally:
        await executor.stop()
        await server.stop()
    results = {r["session_id"]: r for _, _, (name, r), _, _ in inbox.records}
    assert set(results) == {"s0", "s1", "s2"}
    for sid, result in results.items():
        assert result["ok"] and result["content"] == ANSWER
        assert (result["input_tokens"], result["output_tokens"], result["cached_tokens"]) == (
            1000,
            200,
            400,
        )
        assert result["cost_usd"] == pytest.approx((600 * 1.0 + 400 * 0.5 + 200 * 2.0) / 1e6)
        pieces = [
            (record["index"], record["text"], partition)
            for partition, _, (name, record), _, _ in deltas.records
            if name == "TokenDelta" and record["session_id"] == sid
        ]
        assert [i for i, _, _ in pieces] == list(range(len(pieces))) and len(pieces) > 3
        assert "".join(t for _, t, _ in pieces) == ANSWER
        assert {p for _, _, p in pieces} == {session_partition(sid, kafka.partitions)}
        assert all(r["call_id"] == f"call-{sid}" for _, _, (_, r), _, _ in deltas.records if r["session_id"] == sid)  # fmt: skip


async def test_bad_answers_and_bad_work_items_are_failed_results(
    kafka_bootstrap: str, catalogue: Catalogue
) -> None:
    kafka = kafka_settings(catalogue, kafka_bootstrap)
    server = await FakeModelServer("openai", default=Raw(b"{this is not json")).start()
    settings = PoolSettings(stream_deltas=False, backoff_base_s=0.01, max_attempts_per_model=2)
    executor = LLMExecutor(kafka=kafka, agents=_catalog(server), pool_settings=settings)
    await executor.start()
    try:
        await produce(
            kafka,
            catalogue.llm_calls.name,
            [_work("bad-json", "Hi"), _work("no-model", "Hi", model="missing")],
        )
        inbox = await _results(kafka, catalogue, 2)
        server.default = Reply("fine now")
        await produce(kafka, catalogue.llm_calls.name, [_work("after", "Hi")])
        inbox = await _results(kafka, catalogue, 3)
    finally:
        await executor.stop()
        await server.stop()
    results = {r["session_id"]: r for _, _, (_, r), _, _ in inbox.records}
    assert not results["bad-json"]["ok"] and "not JSON" in results["bad-json"]["error"]
    assert results["bad-json"]["attempts"] == 2
    assert not results["no-model"]["ok"] and "unknown model" in results["no-model"]["error"]
    assert results["after"]["ok"] and results["after"]["content"] == "fine now"
    assert executor.stats().finished == 3
