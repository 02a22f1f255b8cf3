"""Durable timers of every kind: which the core asks for, what they become, exact deadlines.

A timer that names the wrong call, or none, would make ``decide`` treat the
timeout as stale and the session would wait forever; one a millisecond late
or early at a deadline changes what a replay decides. These tests pin each
kind's call id, timer id and deadline, and the deadline's exact boundary.
"""

from __future__ import annotations

from dataclasses import replace

from processors.agents.catalog import AgentCatalog
from processors.core import Timer, derive_id, timer_command, timers_of
from tests.unit.test_core_kit import CATALOG, CODEC, Script, Session


def started(
    agent: str = "demo", agents: AgentCatalog = CATALOG, **kw: object
) -> tuple[Session, Script]:
    session, script = Session(agents=agents), Script()
    assert session.apply(script.start(agent, **kw)).rejection is None  # type: ignore[arg-type]
    return session, script


def pending_llm(session: Session) -> str:
    assert session.now.pending_llm is not None
    return session.now.pending_llm.call_id


def test_llm_timer_names_the_call_and_its_deadline() -> None:
    session, _ = started("quick")
    call = pending_llm(session)
    requested = session.last("LLMCallRequested")["time_ms"]
    assert timers_of(session.now) == (
        Timer(requested + 5_000, "llm_timeout", call, f"llm_timeout:{call}"),
    )


def test_tool_and_approval_timers_name_their_calls_earliest_first() -> None:
    session, script = started("gated")
    # The model asks for the calculator first; the gated weather call's 30 s approval
    # timer is nonetheless due before the calculator's 60 s tool timer.
    tools = [("c1", "calculator", {"expression": "2"}), ("w1", "weather", {"city": "Rome"})]
    session.apply(script.llm_ok(pending_llm(session), content=None, tools=tools))
    at = script.now_ms
    assert timers_of(session.now) == (
        Timer(at + 30_000, "approval_timeout", "w1", "approval_timeout:w1"),
        Timer(at + 60_000, "tool_timeout", "c1", "tool_timeout:c1"),
    )


def test_an_approved_call_gets_a_tool_timer_from_the_approval_on() -> None:
    session, script = started("gated")
    session.apply(script.llm_ok(pending_llm(session), tools=[("w1", "weather", {"city": "Rome"})]))
    script.now_ms += 10_000  # a human takes ten seconds
    session.apply(script.approval("w1", True))
    assert timers_of(session.now) == (
        Timer(script.now_ms + 60_000, "tool_timeout", "w1", "tool_timeout:w1"),
    )


def test_idle_timer_counts_from_the_last_event_of_an_open_session() -> None:
    session, script = started("quick", keep_open=True)
    assert session.now.idle_deadline_ms is None  # still working: no idle timer yet
    session.apply(script.llm_ok(pending_llm(session), content="hi"))
    answered = session.last("AssistantMessageAdded")["time_ms"]
    assert session.now.idle_deadline_ms == answered + 10_000
    assert timers_of(session.now) == (
        Timer(answered + 10_000, "idle_timeout", None, "idle_timeout:s-1"),
    )
    closed, closed_script = started("quick")
    closed.apply(closed_script.llm_ok(pending_llm(closed), content="bye"))
    assert closed.now.idle_deadline_ms is None and timers_of(closed.now) == ()


def test_a_session_that_ended_has_no_timer() -> None:
    session, script = started("gated", keep_open=True)
    session.apply(script.llm_ok(pending_llm(session), tools=[("w1", "weather", {"city": "Oslo"})]))
    assert timers_of(session.now)
    session.apply(script.cancel())
    assert timers_of(session.now) == ()


def test_idle_timeout_fires_at_its_deadline_and_not_a_millisecond_before() -> None:
    session, script = started("quick", keep_open=True)
    session.apply(script.llm_ok(pending_llm(session), content="first"))
    (idle,) = timers_of(session.now)
    script.now_ms = idle.deadline_ms - 2  # the next command is at deadline - 1
    assert session.apply(script.timer("idle_timeout", None)).duplicate
    decision = session.apply(script.timer("idle_timeout", None))  # exactly at the deadline
    assert [name for name, _ in decision.events] == ["SessionCompleted"]
    assert session.now.end_reason == "idle_timeout" and session.now.output == "first"


def test_a_timer_of_the_wrong_kind_for_a_call_is_stale() -> None:
    session, script = started("gated")
    tools = [("w1", "weather", {"city": "Rome"}), ("c1", "calculator", {"expression": "2"})]
    session.apply(script.llm_ok(pending_llm(session), tools=tools))
    assert session.apply(script.timer("tool_timeout", "w1")).duplicate  # w1 never ran
    assert session.apply(script.timer("approval_timeout", "c1")).duplicate  # c1 needs none
    assert session.apply(script.timer("tool_timeout", None)).duplicate
    assert session.apply(script.timer("llm_timeout", "c1")).duplicate
    assert [t.call_id for t in session.now.pending_tools] == ["w1", "c1"]


def test_timeout_errors_give_the_agents_timeouts_in_seconds() -> None:
    quick = CATALOG.agents["quick"]
    agents = AgentCatalog(
        {"quick": replace(quick, llm_timeout_s=2.5, tool_timeout_s=1.5)},
        CATALOG.models,
        CATALOG.tools,
    )
    session, script = started("quick", agents)
    session.apply(script.llm_ok(pending_llm(session), tools=[("t1", "calculator", {})]))
    session.apply(script.timer("tool_timeout", "t1"))
    assert session.last("ToolCallFailed")["error"] == "timeout after 1.5s"
    session.apply(script.timer("llm_timeout", pending_llm(session)))
    assert session.last("LLMCallFailed")["error"] == "timeout after 2.5s"
    assert session.now.end_reason == "llm_failed: timeout after 2.5s"


def test_tool_timeout_error_is_what_the_model_reads_next() -> None:
    session, script = started("quick")
    session.apply(script.llm_ok(pending_llm(session), tools=[("t1", "calculator", {})]))
    decision = session.apply(script.timer("tool_timeout", "t1"))
    failed = session.last("ToolCallFailed")
    assert (failed["call_id"], failed["tool"]) == ("t1", "calculator")
    (work,) = decision.work
    assert work.record[1]["messages"][-1] == {
        "role": "tool",
        "content": "error: timeout after 2s",
        "tool_call_id": "t1",
        "name": "calculator",
        "tool_calls": [],
    }


def test_timer_command_carries_the_timer_and_the_session_envelope() -> None:
    session, script = started("gated")
    session.apply(script.llm_ok(pending_llm(session), tools=[("w1", "weather", {"city": "Lima"})]))
    (timer,) = timers_of(session.now)
    late = timer.deadline_ms + 750  # a wheel that fires late keeps the real time
    name, record = timer_command(session.now, timer, late)
    CODEC.encode(name, record)
    assert name == "TimerFired"
    assert {k: v for k, v in record.items() if k != "event_id"} == {
        "session_id": "s-1",
        "tenant_id": "tenant-a",
        "time_ms": late,
        "causation_id": None,
        "correlation_id": session.now.correlation_id,
        "timer_id": "approval_timeout:w1",
        "kind": "approval_timeout",
        "call_id": "w1",
    }
    session.apply((name, record))
    assert session.last("ToolCallFailed")["error"] == "denied: no approval within 30s"


def test_timer_command_ids_repeat_for_the_same_timer_and_differ_otherwise() -> None:
    session, script = started("quick", keep_open=True)
    session.apply(script.llm_ok(pending_llm(session), content="first"))
    (first,) = timers_of(session.now)
    fired = timer_command(session.now, first, first.deadline_ms)[1]["event_id"]
    late = timer_command(session.now, first, first.deadline_ms + 99)[1]["event_id"]
    assert late == fired  # fired again after a crash: the same command
    # ... in every release too (a timer fired before an upgrade may be redelivered after it).
    assert fired == derive_id("s-1", "timer", "idle_timeout:s-1", first.deadline_ms)
    session.apply(script.user("more"))
    session.apply(script.llm_ok(pending_llm(session), content="second"))
    (later,) = timers_of(session.now)
    assert later.timer_id == first.timer_id and later.deadline_ms > first.deadline_ms
    # A new deadline is a new command: the runtime must not take it for the old one.
    assert timer_command(session.now, later, later.deadline_ms)[1]["event_id"] != fired
    other = Script(session_id="s-2")
    twin = Session()
    twin.apply(other.start("quick", keep_open=True))
    twin.apply(other.llm_ok(pending_llm(twin), content="first"))
    (twin_timer,) = timers_of(twin.now)
    assert twin_timer.deadline_ms == first.deadline_ms
    assert timer_command(twin.now, twin_timer, 0)[1]["event_id"] != fired
