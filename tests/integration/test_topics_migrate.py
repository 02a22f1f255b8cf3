"""``topics grow --migrate``: sessions move to a new generation of topics whole and carry on.

Sessions run on 2 partitions: some complete, some wait for an approval; the
workers stop; one approval is produced to the old inbox and never applied
there. The migration to 4 partitions is cut short (a crash mid-transaction),
then run again: it resumes without copying anything twice. Every session's
events are the same records in the same order (same event ids), each on its
murmur2 partition of the new count; workers on the new topics apply the copied
approval, take the others, and every waiting session completes with the log's
invariants intact.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from typing import Any

import pytest

from agentstream.commands import topics_migrate
from agentstream.commands.topics_migrate import MigrationError, MigrationInterrupted, migrate
from processors.agents.catalog import DEMO_AGENT, AgentCatalog, builtin_catalog
from streams.admin import delete_topics, ensure_topics, require_ok
from streams.catalogue import Catalogue
from streams.partitioner import session_partition
from streams.settings import KafkaSettings
from tests.integration.engine_kit import (
    check_invariants,
    command,
    new_ids,
    produce,
    read_topic,
    running,
    start_session,
    wait_for_terminal,
)

pytestmark = pytest.mark.integration

GATED = dataclasses.replace(DEMO_AGENT, name="gated", approval=frozenset({"calculator"}))


def _catalog() -> AgentCatalog:
    base = builtin_catalog()
    return AgentCatalog({**base.agents, "gated": GATED}, base.models, base.tools)


async def _approvals_asked(kafka: KafkaSettings, ids: list[str]) -> dict[str, str]:
    """Each session's call waiting for approval, once all of them wait."""
    catalogue = Catalogue.from_settings(kafka)
    deadline = time.monotonic() + 60
    while True:
        sessions = (await read_topic(kafka, catalogue.events.name)).by_session()
        asked = {
            sid: event["call_id"]
            for sid in ids
            for name, event in sessions.get(sid, [])
            if name == "ApprovalRequested"
        }
        if len(asked) == len(ids):
            return asked
        assert time.monotonic() < deadline, f"approvals asked: {sorted(asked)}"
        await asyncio.sleep(0.3)


async def test_migrate_copies_every_session_whole_resumes_and_sessions_carry_on(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = KafkaSettings(kafka_bootstrap, f"t{uuid.uuid4().hex[:8]}", partitions=2)
    new = KafkaSettings(kafka_bootstrap, f"{old.topic_prefix}-p4", partitions=4)
    old_cat, new_cat = Catalogue.from_settings(old), Catalogue.from_settings(new)
    agents = _catalog()
    done, gated = new_ids(6, "done"), new_ids(4, "gated")
    said: list[str] = []
    try:
        require_ok(await ensure_topics(old, old_cat))
        async with running(old, agents=agents):
            starts = [start_session(s, "What is 6*7?") for s in done]
            starts += [start_session(s, "What is 6*7?", agent="gated") for s in gated]
            await produce(old, old_cat.inbox.name, starts)
            await wait_for_terminal(old, old_cat, done)
            asked = await _approvals_asked(old, gated)
            with pytest.raises(MigrationError, match="workers still run"):
                await migrate(old, new, say=said.append)
        approve = [command("Approval", s, call_id=asked[s], approved=True) for s in gated]
        await produce(old, old_cat.inbox.name, approve[:1])  # never applied on the old topics
        before = (await read_topic(old, old_cat.events.name)).by_session()

        monkeypatch.setattr(topics_migrate, "BATCH", 10)
        with pytest.raises(MigrationInterrupted):
            await migrate(old, new, say=said.append, stop_after=25)
        report = await migrate(old, new, say=said.append)
        assert report.skipped["events"] == 20  # two transactions of 10 made it, 5 aborted
        assert report.copied["events"] + 20 == sum(len(e) for e in before.values())
        assert report.copied["inbox"] >= 1 and report.sessions == len(done) + len(gated)

        records = await read_topic(new, new_cat.events.name)
        for partition, _, (_, event), _, _ in records.records:
            assert partition == session_partition(event["session_id"], 4)
        after = records.by_session()
        assert {s: [e["event_id"] for _, e in events] for s, events in after.items()} == {
            s: [e["event_id"] for _, e in events] for s, events in before.items()
        }

        async with running(new, agents=agents):
            await produce(new, new_cat.inbox.name, approve[1:])
            sessions = await wait_for_terminal(new, new_cat, done + gated)
        check_invariants(sessions)
        for sid in gated:
            names = [name for name, _ in sessions[sid]]
            assert names[-1] == "SessionCompleted", names
            answer: dict[str, Any] = sessions[sid][-1][1]
            assert "42" in str(answer.get("output")), answer
            prefix = [e["event_id"] for _, e in sessions[sid][: len(before[sid])]]
            assert prefix == [e["event_id"] for _, e in before[sid]]
    finally:
        for settings, catalogue in ((old, old_cat), (new, new_cat)):
            await delete_topics(settings, [spec.name for spec in catalogue.all()])
