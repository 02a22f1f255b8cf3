"""Snapshots: exact round trip of any state, the documented format, size and speed."""

from __future__ import annotations

import json
import time
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.agents.model_types import ChatMessage, ToolCall
from processors.core import (
    PendingLLM,
    PendingTool,
    SessionState,
    SnapshotError,
    decode_state,
    encode_state,
    rebuild,
)
from tests.unit.test_core_kit import Script, Session

text = st.text(max_size=30)  # includes lone surrogates and every plane
ids = st.text(min_size=1, max_size=12)
ints = st.integers(0, 2**53)
calls = st.builds(ToolCall, ids, ids, text)
messages = st.builds(
    ChatMessage,
    st.sampled_from(["system", "user", "assistant", "tool"]),
    st.none() | text,
    st.none() | ids,
    st.none() | ids,
    st.lists(calls, max_size=2).map(tuple),
)
pending_tools = st.builds(
    PendingTool, ids, ids, text, ids, st.sampled_from(["running", "awaiting_approval"]), ints
)
states = st.builds(
    SessionState,
    session_id=ids,
    tenant_id=ids,
    agent=ids,
    status=st.sampled_from(
        ["running", "waiting_for_user", "waiting_for_approval", "completed", "failed", "cancelled"]
    ),
    seq=ints,
    correlation_id=ids,
    start_event_id=ids,
    messages=st.lists(messages, max_size=6).map(tuple),
    deferred=st.lists(messages, max_size=2).map(tuple),
    llm_steps=ints,
    turn_steps=ints,
    pending_llm=st.none() | st.builds(PendingLLM, ids, ints, ints, ints),
    pending_tools=st.lists(pending_tools, max_size=3).map(tuple),
    finished_calls=st.frozensets(ids, max_size=5),
    tokens_used=ints,
    cost_usd=st.floats(allow_nan=False),
    keep_open=st.booleans(),
    idle_timeout_ms=ints,
    llm_timeout_ms=ints,
    tool_timeout_ms=ints,
    approval_timeout_ms=ints,
    last_activity_ms=ints,
    output=st.none() | text,
    end_reason=st.none() | text,
    started_ms=ints,
    updated_ms=ints,
)


@settings(max_examples=300, deadline=None)
@given(states)
def test_any_state_round_trips_exactly(state: SessionState) -> None:
    data = encode_state(state)
    assert data[0] in (1, 2)
    assert decode_state(data) == state


def long_session(turns: int) -> Session:
    """A keep_open session of ``turns`` turns, each with one tool call: 6 events a turn."""
    script, session = Script(), Session()
    session.apply(script.start("quick", "start", keep_open=True))
    for turn in range(turns):
        state = session.now
        assert state.pending_llm is not None
        tools = [(f"t{turn}", "calculator", {"expression": f"{turn}+1"})]
        session.apply(script.llm_ok(state.pending_llm.call_id, content=None, tools=tools))
        session.apply(script.tool(f"t{turn}", output=str(turn + 1)))
        assert session.now.pending_llm is not None
        session.apply(script.llm_ok(session.now.pending_llm.call_id, content=f"it is {turn + 1}"))
        session.apply(script.user(f"and what is {turn + 1}+1?"))
    return session


def test_format_is_a_version_byte_then_json() -> None:
    state = long_session(1).now
    data = encode_state(state)
    assert data[0] == 1
    body = json.loads(data[1:])
    assert body[0] == state.session_id and body[4] == state.seq
    big = long_session(60).now
    packed = encode_state(big)
    assert packed[0] == 2
    assert json.loads(zlib.decompress(packed[1:]))[4] == big.seq


def test_bad_bytes_are_refused() -> None:
    good = json.loads(encode_state(long_session(1).now)[1:])
    broken_messages = json.dumps([*good[:7], [[1, 2, 3, 4, 5]], *good[8:]]).encode()
    broken_pending = json.dumps([*good[:11], [1], *good[12:]]).encode()
    for data in (
        b"",
        b"\x09{}",
        b"\x01not json",
        b"\x01[1,2]",
        b"\x02garbage",
        b"\x01" + broken_messages,
        b"\x01" + broken_pending,
    ):
        with pytest.raises(SnapshotError):
            decode_state(data)
    body = json.loads(encode_state(long_session(1).now)[1:])
    body[3] = "exploded"
    with pytest.raises(SnapshotError):
        decode_state(b"\x01" + json.dumps(body).encode())


def test_size_and_speed_sanity() -> None:
    session = long_session(170)  # ~1,000 events, ~680 messages
    state, log = session.now, session.log
    assert len(log) >= 1_000
    data = encode_state(state)
    started = time.perf_counter()
    for _ in range(20):
        decode_state(encode_state(state))
    round_trip_ms = (time.perf_counter() - started) / 20 * 1000
    started = time.perf_counter()
    rebuilt = rebuild(log)
    rebuild_ms = (time.perf_counter() - started) * 1000
    assert rebuilt == state
    small = encode_state(long_session(1).now)
    print(
        f"\nsnapshot: {len(small)} B for 1 turn, {len(data)} B for {len(log)} events; "
        f"encode+decode {round_trip_ms:.2f} ms; rebuild of {len(log)} events {rebuild_ms:.1f} ms"
    )
    assert len(small) < 1_500
    assert len(data) < 40_000  # compressed
    assert round_trip_ms < 50
    assert rebuild_ms < 500  # generous: CI machines vary; the benchmark holds the real target
