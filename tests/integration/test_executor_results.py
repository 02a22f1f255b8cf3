"""The executors of one worker send their results with one producer.

Shared, the LLM and tool results bound for one inbox partition leave in one
request; the producer must outlive the first executor that stops and close with
the last one.
"""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import ProducerClosed

from agentstream.worker_app import Components
from processors.agents.loader import load_agents
from processors.executors.work_executor import WorkExecutor
from streams.catalogue import Catalogue
from tests.integration.engine_kit import kafka_settings, read_topic

pytestmark = pytest.mark.integration


def _producer_of(executor: WorkExecutor) -> AIOKafkaProducer:
    producer = executor._producer
    assert producer is not None, "the executor has not started"
    return producer


async def test_executors_share_one_result_producer_until_the_last_stops(
    catalogue: Catalogue, kafka_bootstrap: str
) -> None:
    kafka = kafka_settings(catalogue, kafka_bootstrap)
    components = Components.build(kafka, load_agents(None), ["llm", "tools"])
    llm, tools = components.executors
    await components.start()
    shared = _producer_of(llm)
    try:
        assert id(tools._producer) == id(shared), "each executor has its own producer"

        await llm.stop()
        # Still open for the tool executor: its results must go on being sent.
        # (bounded: a send on a producer closed before it knew the topic waits forever)
        await asyncio.wait_for(
            shared.send_and_wait(catalogue.inbox.name, b"after-llm-stopped", partition=0), 30
        )
        inbox = await read_topic(kafka, catalogue.inbox.name, decode=False)
        assert [value for *_, value in inbox.records] == [b"after-llm-stopped"]
    finally:
        await tools.stop()
    with pytest.raises(ProducerClosed):
        await shared.send_and_wait(catalogue.inbox.name, b"after-both-stopped", partition=0)
