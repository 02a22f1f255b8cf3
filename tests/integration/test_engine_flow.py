"""The session engine end to end on the real broker and Postgres (in-process workers)."""

from __future__ import annotations

import asyncio

import pytest

from processors.core import rebuild
from schemas import TERMINAL_EVENT_NAMES
from streams.catalogue import Catalogue
from streams.dlq import ERROR, ORIGIN_OFFSET, ORIGIN_TOPIC, REASON
from tests.integration.engine_kit import (
    check_invariants,
    command,
    kafka_settings,
    new_ids,
    produce,
    produce_raw,
    read_topic,
    running,
    start_session,
    wait_for_terminal,
)

pytestmark = pytest.mark.integration


async def test_sessions_complete_with_a_clean_log(
    kafka_bootstrap: str, catalogue: Catalogue
) -> None:
    kafka = kafka_settings(catalogue, kafka_bootstrap)
    ids = new_ids(200)
    async with running(kafka) as components:
        await produce(
            kafka,
            catalogue.inbox.name,
            [
                start_session(s, f"What is {i}*6 and the weather in Oslo?")
                for i, s in enumerate(ids)
            ],
        )
        sessions = await wait_for_terminal(kafka, catalogue, ids)
        assert components.engine is not None
        live = {
            sid: engine.cache.get(sid)
            for engine in components.engine.partitions.values()
            for sid in ids
            if sid in engine.cache
        }
    check_invariants(sessions)
    for i, sid in enumerate(ids):
        names = [name for name, _ in sessions[sid]]
        assert names[-1] == "SessionCompleted", names
        assert names.count("LLMCallRequested") == 2 and names.count("ToolCallCompleted") == 2
        assert str(i * 6) in sessions[sid][-1][1]["output"]
        # the live state is exactly the fold of the session's events
        assert live[sid] == rebuild(sessions[sid])
    # the log records each message once: no event carries the prompt
    for events in sessions.values():
        for name, event in events:
            if name == "LLMCallRequested":
                assert set(event) >= {"call_id", "prompt_hash", "message_count"}
                assert "messages" not in event


async def test_poison_records_go_to_the_dlq_and_the_partition_moves_on(
    kafka_bootstrap: str, catalogue: Catalogue
) -> None:
    kafka = kafka_settings(catalogue, kafka_bootstrap)
    bad, good, ghost = new_ids(3)
    async with running(kafka):
        await produce_raw(
            kafka, catalogue.inbox.name, bad.encode(), b"\x00\x00\x00\x00\x09not avro"
        )
        await produce_raw(kafka, catalogue.inbox.name, bad.encode(), b"plain text")
        await produce(kafka, catalogue.inbox.name, [
            start_session(bad, "hi", agent="no-such-agent"),
            command("ToolCallResult", ghost, call_id="nope", ok=True, output="x"),
            command("UserMessage", ghost, text="hello?"),
            start_session(good, "What is 2+2?"),
        ])  # fmt: skip
        sessions = await wait_for_terminal(kafka, catalogue, [good])
        await asyncio.sleep(0.5)
    dlq = await read_topic(kafka, catalogue.dlq.name, decode=False)
    reasons = sorted(dict(headers)[REASON].decode() for _, _, _, headers, _ in dlq.records)
    assert reasons == ["rejected", "rejected", "rejected", "undecodable", "undecodable"]
    for _, _, _, headers, _ in dlq.records:
        h = dict(headers)
        assert h[ORIGIN_TOPIC].decode() == catalogue.inbox.name and int(h[ORIGIN_OFFSET]) >= 0
        assert h[ERROR]
    errors = " | ".join(dict(h)[ERROR].decode() for _, _, _, h, _ in dlq.records)
    assert "no-such-agent" in errors
    assert sessions[good][-1][0] == "SessionCompleted"
    assert bad not in sessions and ghost not in sessions  # nothing was half-written


async def test_duplicate_results_and_starts_are_ignored(
    kafka_bootstrap: str, catalogue: Catalogue
) -> None:
    kafka = kafka_settings(catalogue, kafka_bootstrap)
    (sid,) = new_ids(1)
    start = start_session(sid, "What is 3*3?")
    async with running(kafka):
        await produce(kafka, catalogue.inbox.name, [start])
        sessions = await wait_for_terminal(kafka, catalogue, [sid])
        llm = next(e for n, e in sessions[sid] if n == "LLMCallCompleted")
        tool = next(e for n, e in sessions[sid] if n == "ToolCallCompleted")
        before = len(sessions[sid])
        # an executor crashed and retried: the same results again, and the same StartSession
        await produce(kafka, catalogue.inbox.name, [
            command("LLMCallResult", sid, call_id=llm["call_id"], ok=True, content="again"),
            command("ToolCallResult", sid, call_id=tool["call_id"], ok=True, output="again"),
            start,
            command("Cancel", sid),
        ])  # fmt: skip
        await asyncio.sleep(1.5)
    after = (await read_topic(kafka, catalogue.events.name)).by_session()[sid]
    assert len(after) == before
    check_invariants({sid: after})
    assert (await read_topic(kafka, catalogue.dlq.name, decode=False)).records == []


async def test_cancel_and_keep_open_conversation(
    kafka_bootstrap: str, catalogue: Catalogue
) -> None:
    kafka = kafka_settings(catalogue, kafka_bootstrap)
    chat, cancelled = new_ids(2)
    async with running(kafka):
        await produce(kafka, catalogue.inbox.name, [
            start_session(chat, "What is 5+5?", keep_open=True),
            start_session(cancelled, "What is 7*7?", keep_open=True),
        ])  # fmt: skip
        for _ in range(100):
            sessions = (await read_topic(kafka, catalogue.events.name)).by_session()
            if all(
                any(n == "AssistantMessageAdded" for n, _ in sessions.get(s, []))
                for s in (chat, cancelled)
            ):
                break
            await asyncio.sleep(0.2)
        await produce(kafka, catalogue.inbox.name, [
            command("UserMessage", chat, text="And the weather in Lima?"),
            command("Cancel", cancelled, reason="user left"),
        ])  # fmt: skip
        await wait_for_terminal(kafka, catalogue, [cancelled])
        for _ in range(100):
            sessions = (await read_topic(kafka, catalogue.events.name)).by_session()
            if [n for n, _ in sessions[chat]].count("AssistantMessageAdded") == 2:
                break
            await asyncio.sleep(0.2)
        await produce(kafka, catalogue.inbox.name, [command("Cancel", chat)])
        sessions = await wait_for_terminal(kafka, catalogue, [chat, cancelled])
    check_invariants(sessions)
    chat_names = [n for n, _ in sessions[chat]]
    assert chat_names.count("UserMessageAdded") == 2 and chat_names[-1] == "SessionCancelled"
    assert "Lima" in [e for n, e in sessions[chat] if n == "AssistantMessageAdded"][-1]["text"]
    assert sessions[cancelled][-1][0] == "SessionCancelled"
    assert sum(n in TERMINAL_EVENT_NAMES for n, _ in sessions[cancelled]) == 1
