"""Snapshot bytes, pinned: the documented format, byte for byte, and where compression starts.

Snapshots are read back by later releases and by other tools (the format is
documented in ``processors/core/snapshot.py``), so the bytes themselves are the
contract: a change must be a new version byte, never a silent change of version 1.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import replace

import pytest

from processors.agents.model_types import ChatMessage, ToolCall
from processors.core import (
    PendingLLM,
    PendingTool,
    SessionState,
    SnapshotError,
    decode_state,
    encode_state,
)
from processors.core.snapshot import COMPRESS_OVER

STATE = SessionState(
    session_id="s-1",
    tenant_id="acme",
    agent="demo",
    status="running",
    seq=9,
    correlation_id="corr",
    start_event_id="start",
    messages=(
        ChatMessage("user", "2+2? ünïcode"),
        ChatMessage("assistant", None, tool_calls=(ToolCall("t1", "calculator", '{"e":"2+2"}'),)),
        ChatMessage("tool", "4", tool_call_id="t1", name="calculator"),
        ChatMessage("assistant"),
    ),
    deferred=(ChatMessage("user", "wait"),),
    llm_steps=2,
    turn_steps=1,
    pending_llm=PendingLLM("llm-2", 2, 1_700_000_120_000, 4),
    pending_tools=(
        PendingTool("t2", "weather", "{}", "llm-1", "awaiting_approval", 1_700_000_030_000),
    ),
    finished_calls=frozenset({"t1", "llm-1"}),
    tokens_used=150,
    cost_usd=0.25,
    keep_open=True,
    idle_timeout_ms=300_000,
    llm_timeout_ms=120_000,
    tool_timeout_ms=60_000,
    approval_timeout_ms=86_400_000,
    last_activity_ms=1_700_000_000_500,
    output=None,
    end_reason=None,
    started_ms=1_700_000_000_000,
    updated_ms=1_700_000_000_500,
)

PINNED = (
    b'\x01["s-1","acme","demo","running",9,"corr","start",'
    b'[["user","2+2? \xc3\xbcn\xc3\xafcode"],'
    b'["assistant",null,null,null,[["t1","calculator","{\\"e\\":\\"2+2\\"}"]]],'
    b'["tool","4","t1","calculator"],'
    b'["assistant"]],'
    b'[["user","wait"]],'
    b"2,1,"
    b'["llm-2",2,1700000120000,4],'
    b'[["t2","weather","{}","llm-1","awaiting_approval",1700000030000]],'
    b'["llm-1","t1"],'
    b"150,0.25,true,300000,120000,60000,86400000,1700000000500,null,null,"
    b"1700000000000,1700000000500]"
)


def test_version_1_bytes_are_pinned() -> None:
    assert encode_state(STATE) == PINNED
    assert decode_state(PINNED) == STATE


def test_an_ended_state_round_trips_its_output_and_reason() -> None:
    ended = replace(
        STATE,
        status="completed",
        output="fine",
        end_reason="idle_timeout",
        pending_llm=None,
        pending_tools=(),
        deferred=(),
    )
    body = json.loads(encode_state(ended)[1:])
    assert body[3] == "completed" and body[11] is None and body[12] == [] and body[8] == []
    assert body[22:24] == ["fine", "idle_timeout"]
    assert decode_state(encode_state(ended)) == ended


def _state_with_json_size(size: int) -> tuple[SessionState, bytes]:
    """STATE with an output long enough that its snapshot's JSON is ``size`` bytes."""
    empty = len(encode_state(replace(STATE, output=""))) - 1  # JSON bytes with output ""
    state = replace(STATE, output="x" * (size - empty))
    return state, encode_state(state)


def test_json_of_exactly_the_threshold_is_stored_plain() -> None:
    state, data = _state_with_json_size(COMPRESS_OVER)
    assert COMPRESS_OVER == 4096
    assert data[0] == 1 and len(data) == 1 + 4096
    assert decode_state(data) == state


def test_json_one_byte_over_the_threshold_is_stored_compressed() -> None:
    state, data = _state_with_json_size(COMPRESS_OVER + 1)
    assert data[0] == 2
    text = zlib.decompress(data[1:])
    assert len(text) == 4097 and json.loads(text)[22] == state.output
    assert len(data) < 1_000  # long repeated text compresses well
    assert decode_state(data) == state


def test_text_that_is_not_valid_unicode_passes_through() -> None:
    odd = replace(STATE, output="lone \udcff surrogate", messages=(ChatMessage("user", "\ud800"),))
    data = encode_state(odd)
    assert b"lone \xed\xb3\xbf surrogate" in data
    assert decode_state(data) == odd


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty snapshot"),
        (b"\x03[]", "unknown snapshot format version 3"),
        (PINNED.replace(b'"running"', b'"sleeping"'), "bad status 'sleeping'"),
        (PINNED.replace(b'[["user","wait"]]', b'[["robot","wait"]]'), "bad message role 'robot'"),
        (b"\x01[1,2]", "not a session snapshot: "),
        (b"\x02" + zlib.compress(b"[1,2]"), "not a session snapshot: "),
        (b"\x02not zlib", "not a session snapshot: "),
        (b"\x01\xff", "not a session snapshot: "),
    ],
)
def test_bytes_that_are_not_a_snapshot_are_refused_saying_why(data: bytes, reason: str) -> None:
    with pytest.raises(SnapshotError) as raised:
        decode_state(data)
    assert str(raised.value).startswith(reason)
    if reason.endswith(": "):
        assert len(str(raised.value)) > len(reason)  # the codec's own words follow
