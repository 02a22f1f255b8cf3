"""Ids the core derives: deterministic, uuid5, the same in every release, unique per session.

Ids are part of the log and of every command the runtime produces: a command
redelivered after an upgrade must carry the same id to be seen as a duplicate,
and a tool result must match exactly one call.
"""

from __future__ import annotations

import uuid
from typing import Any

from processors.core import NAMESPACE, SessionState, derive_id
from tests.unit.test_core_kit import Script, Session


def started() -> tuple[Session, Script]:
    session, script = Session(), Script()
    assert session.apply(script.start()).rejection is None
    return session, script


def call_of(state: SessionState) -> str:
    assert state.pending_llm is not None
    return state.pending_llm.call_id


def test_derived_ids_are_uuid5_of_the_parts() -> None:
    assert derive_id("s-1", 1, "cmd") == str(uuid.uuid5(NAMESPACE, "s-1:1:cmd"))
    assert derive_id("ünï", 10**12) == str(uuid.uuid5(NAMESPACE, "ünï:1000000000000"))
    for n in range(64):  # every version and variant bit, over many digests
        assert derive_id("s", n, "work") == str(uuid.uuid5(NAMESPACE, f"s:{n}:work"))
    assert derive_id("a", "b") != derive_id("ab") != derive_id("b", "a")
    assert derive_id("lone \udcff") != derive_id("lone \udcfe")  # any text gives an id


def test_the_ids_of_a_session_are_the_same_in_every_release() -> None:
    session, _ = started()
    decision = session.decisions[0]
    assert [e["event_id"] for _, e in decision.events] == [
        derive_id("s-1", seq, "cmd-s-1-1") for seq in (1, 2, 3)
    ]
    llm_call = derive_id("s-1", "cmd-s-1-1", "llm", 3)
    assert call_of(session.now) == llm_call
    (work,) = decision.work
    assert work.record[1]["event_id"] == derive_id("s-1", "cmd-s-1-1", "work", llm_call)
    assert work.record[1]["causation_id"] == decision.events[2][1]["event_id"]
    # The literal values: a change here breaks deduplication of redelivered commands.
    assert decision.events[0][1]["event_id"] == "c9896f4d-1e16-5230-a78b-dc4f9f7e02b4"
    assert llm_call == "b4550ebe-57db-5475-bf07-d5651e134f8d"


def test_tool_call_ids_the_model_repeats_are_replaced_by_derived_ones() -> None:
    session, script = started()
    tools: list[tuple[str, str, dict[str, Any]]] = [
        ("", "calculator", {}),
        ("call_0", "calculator", {}),
        ("call_0", "weather", {}),
    ]
    name, record = script.llm_ok(call_of(session.now), tools=tools)
    session.apply((name, record))
    ids = [t.call_id for t in session.now.pending_tools]
    assert ids == [
        derive_id("s-1", record["event_id"], "tool", 0),
        "call_0",
        derive_id("s-1", record["event_id"], "tool", 2),
    ]
    assert [c["arguments_json"] for c in session.last("LLMCallCompleted")["tool_calls"]] == [
        "{}"
    ] * 3


def test_a_tool_call_without_arguments_gets_an_empty_object() -> None:
    session, script = started()
    name, record = script.llm_ok(call_of(session.now), tools=[("t1", "calculator", {})])
    record["tool_calls"][0]["arguments_json"] = ""
    session.apply((name, record))
    assert session.now.pending_tools[0].arguments_json == "{}"
    assert session.decisions[-1].work[0].record[1]["arguments_json"] == "{}"


def test_a_tool_call_id_may_not_reuse_the_pending_model_call_id() -> None:
    session, script = started()
    llm_call = call_of(session.now)
    session.apply(script.llm_ok(llm_call, tools=[(llm_call, "calculator", {})]))
    assert session.now.pending_tools[0].call_id != llm_call


def test_each_work_item_is_caused_by_the_event_that_implies_it() -> None:
    session, script = started()
    tools = [("t1", "calculator", {"expression": "1"}), ("t2", "weather", {"city": "Oslo"})]
    decision = session.apply(script.llm_ok(call_of(session.now), tools=tools))
    requested = {
        e["call_id"]: e["event_id"] for n, e in decision.events if n == "ToolCallRequested"
    }
    assert [(w.kind, w.record[0]) for w in decision.work] == [("tool", "ToolCallWork")] * 2
    assert {w.record[1]["call_id"]: w.record[1]["causation_id"] for w in decision.work} == requested
    decision = session.apply(script.tool("t1"))
    decision = session.apply(script.tool("t2"))
    (work,) = decision.work
    assert (work.kind, work.record[0]) == ("llm", "LLMCallWork")
    assert work.record[1]["causation_id"] == session.last("LLMCallRequested")["event_id"]
