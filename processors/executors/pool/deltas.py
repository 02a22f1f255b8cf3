"""Token deltas: pieces of a streamed answer to ``agentstream.deltas`` while the call runs.

Best effort by design (deltas are not part of state, docs/architecture.md): one
plain producer (acks=1, no idempotence, a few ms of linger), records queued
without waiting for their acks, and a failure to queue is counted and
dropped rather than slowing or failing the call. The final text is only in
the ``LLMCallResult`` (and so in the event log); a listener that misses
deltas loses nothing but the live typing effect. Records are ``TokenDelta``,
keyed by session id on its murmur2 partition (co-partitioned with the
session's other topics). ``index`` restarts at 0 when a call restarts after
a failed attempt, telling a listener to drop what it showed.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaProducer

from processors.executors.pool import metrics
from processors.executors.pool.records import DeltaCallback
from schemas import Codec
from streams.clients import new_producer
from streams.producer import type_headers
from streams.settings import KafkaSettings

log = logging.getLogger(__name__)


class DeltaPublisher:
    """Produces TokenDelta records (see the module docstring)."""

    def __init__(self, kafka: KafkaSettings, topic: str, codec: Codec | None = None) -> None:
        self.kafka = kafka
        self.topic = topic
        self.codec = codec or Codec()
        self._producer: AIOKafkaProducer | None = None
        self._headers = type_headers("TokenDelta")

    async def start(self) -> None:
        self._producer = new_producer(self.kafka, acks=1, enable_idempotence=False)
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    def sink(self, work: Mapping[str, Any]) -> DeltaCallback:
        """The callback publishing deltas of the call that ``work`` (an LLMCallWork) asks for."""
        session_id = str(work["session_id"])
        key = session_id.encode("utf-8")
        envelope = {
            "session_id": session_id,
            "tenant_id": work["tenant_id"],
            "causation_id": work["event_id"],
            "correlation_id": work.get("correlation_id"),
            "call_id": work["call_id"],
        }

        async def publish(index: int, text: str) -> None:
            producer = self._producer
            if producer is None:
                return
            record = {
                "event_id": str(uuid.uuid4()),
                "time_ms": int(time.time() * 1000),
                "index": index,
                "text": text,
                **envelope,
            }
            try:
                await producer.send(
                    self.topic, self.codec.encode("TokenDelta", record), key=key,
                    headers=self._headers,
                )  # fmt: skip
            except Exception as error:  # best effort: never fail the call for a delta
                metrics.DELTAS.labels("dropped").inc()
                log.debug("token delta dropped: %r", error)
                return
            metrics.DELTAS.labels("sent").inc()

        return publish
