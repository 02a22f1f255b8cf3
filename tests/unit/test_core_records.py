"""What the core writes and reads: event fields, rejection reasons, defaults, derived ids.

Events are the log forever and rejection reasons are what an operator reads in
the DLQ, so their exact content is behaviour. A command or event that leaves
out a field with a schema default means that default, whoever made the record
(JSON form, an older producer, a test). Derived ids must not change between
releases: a command redelivered after an upgrade must still be seen as a duplicate.
"""

from __future__ import annotations

from typing import Any

from processors.core import SessionState, decide, evolve, rebuild
from tests.unit.test_core_kit import CATALOG, CODEC, T0, Script, Session, check_log


def started(agent: str = "demo", **kw: Any) -> tuple[Session, Script]:
    session, script = Session(), Script()
    assert session.apply(script.start(agent, **kw)).rejection is None
    return session, script


def call_of(state: SessionState) -> str:
    assert state.pending_llm is not None
    return state.pending_llm.call_id


def with_defaults(name: str, record: dict[str, Any]) -> dict[str, Any]:
    """``record`` as a consumer reads it: every field it leaves out holds the schema default."""
    return CODEC.decode(CODEC.encode(name, record))[1]


# -- the first event -----------------------------------------------------------------------


def started_event(**fields: Any) -> dict[str, Any]:
    event = {
        "event_id": "ev-1",
        "session_id": "s-9",
        "tenant_id": "acme",
        "time_ms": T0,
        "causation_id": "cmd-1",
        "correlation_id": "corr-1",
        "seq": 1,
        "agent": "demo",
        "input": "hi",
    }
    return event | fields


def test_a_session_starts_from_its_first_event_alone() -> None:
    event = started_event(
        keep_open=True,
        idle_timeout_ms=7_000,
        llm_timeout_ms=1_000,
        tool_timeout_ms=2_000,
        approval_timeout_ms=3_000,
    )
    assert evolve(None, "SessionStarted", event) == SessionState(
        session_id="s-9",
        tenant_id="acme",
        agent="demo",
        status="running",
        seq=1,
        correlation_id="corr-1",
        start_event_id="cmd-1",
        messages=(),
        deferred=(),
        llm_steps=0,
        turn_steps=0,
        pending_llm=None,
        pending_tools=(),
        finished_calls=frozenset(),
        tokens_used=0,
        cost_usd=0.0,
        keep_open=True,
        idle_timeout_ms=7_000,
        llm_timeout_ms=1_000,
        tool_timeout_ms=2_000,
        approval_timeout_ms=3_000,
        last_activity_ms=T0,
        output=None,
        end_reason=None,
        started_ms=T0,
        updated_ms=T0,
    )


def test_a_first_event_without_timeouts_gets_the_defaults() -> None:
    """Version 1 of SessionStarted had no timeouts; 0 also means the default."""
    for event in (started_event(), with_defaults("SessionStarted", started_event())):
        state = evolve(None, "SessionStarted", event)
        assert (state.llm_timeout_ms, state.tool_timeout_ms, state.approval_timeout_ms) == (
            120_000,
            60_000,
            86_400_000,
        )
        assert (state.keep_open, state.idle_timeout_ms) == (False, 0)


def test_without_causation_or_correlation_the_event_id_stands_in() -> None:
    state = evolve(None, "SessionStarted", started_event(causation_id=None, correlation_id=None))
    assert (state.start_event_id, state.correlation_id) == ("ev-1", "ev-1")


# -- StartSession --------------------------------------------------------------------------


def test_started_event_records_the_agents_timeouts_and_the_callers_labels() -> None:
    session, _ = started("gated", text="hi there")
    event = session.log[0][1]
    assert {
        k: event[k] for k in event if k not in ("event_id", "correlation_id", "causation_id")
    } == {
        "session_id": "s-1",
        "tenant_id": "tenant-a",
        "time_ms": T0 + 1,
        "seq": 1,
        "agent": "gated",
        "input": "hi there",
        "keep_open": False,
        "idle_timeout_ms": 0,
        "llm_timeout_ms": 120_000,
        "tool_timeout_ms": 60_000,
        "approval_timeout_ms": 30_000,
        "metadata": {"who": "test"},
    }
    assert session.log[1] == ("UserMessageAdded", session.log[1][1])
    assert session.log[1][1]["text"] == "hi there"


def test_idle_timeout_applies_only_to_sessions_kept_open() -> None:
    closed, _ = started(idle=5_000)
    assert closed.log[0][1]["idle_timeout_ms"] == 0
    default, _ = started(keep_open=True)
    assert default.log[0][1]["idle_timeout_ms"] == 300_000  # the agent's default
    own, _ = started(keep_open=True, idle=5_000)
    assert own.log[0][1]["idle_timeout_ms"] == 5_000
    shortest, _ = started(keep_open=True, idle=1)  # however short, it is the session's own
    assert shortest.log[0][1]["idle_timeout_ms"] == 1


def test_correlation_id_of_the_start_command_is_kept_by_every_event() -> None:
    script = Script()
    name, record = script.start()
    record["correlation_id"] = "trace-77"
    session = Session()
    session.apply((name, record))
    session.apply(script.llm_ok(call_of(session.now)))
    assert {e["correlation_id"] for _, e in session.log} == {"trace-77"}
    assert session.now.start_event_id == record["event_id"]
    assert all(e["causation_id"] == record["event_id"] for _, e in session.log[:3])


# -- results as recorded -------------------------------------------------------------------


def test_a_model_result_is_recorded_as_the_pool_reported_it() -> None:
    session, script = started()
    name, record = script.llm_ok(
        call_of(session.now), input_tokens=11, output_tokens=7, cost_usd=0.5
    )
    record.update(model="gpt-x", cached_tokens=3, latency_s=1.25)
    session.apply((name, record))
    completed = session.last("LLMCallCompleted")
    assert {
        k: completed[k] for k in ("model", "input_tokens", "output_tokens", "cached_tokens")
    } == {
        "model": "gpt-x",
        "input_tokens": 11,
        "output_tokens": 7,
        "cached_tokens": 3,
    }
    assert (completed["cost_usd"], completed["latency_s"]) == (0.5, 1.25)
    assert (session.now.tokens_used, session.now.cost_usd) == (18, 0.5)


def test_a_tool_result_is_recorded_as_the_runner_reported_it() -> None:
    session, script = started()
    session.apply(
        script.llm_ok(call_of(session.now), tools=[("t1", "calculator", {}), ("t2", "weather", {})])
    )
    name, record = script.tool("t1", output="42")
    record["latency_s"] = 0.75
    session.apply((name, record))
    assert session.log[-1] == ("ToolCallCompleted", session.log[-1][1])
    completed = session.log[-1][1]
    assert (completed["tool"], completed["output"], completed["latency_s"]) == (
        "calculator",
        "42",
        0.75,
    )
    name, record = script.tool("t2", ok=False)
    record["error"] = None  # a runner that could not say why
    session.apply((name, record))
    assert session.last("ToolCallFailed")["error"] == "tool failed"


def test_a_failed_model_call_without_a_reason_still_says_it_failed() -> None:
    session, script = started()
    name, record = script.llm_fail(call_of(session.now))
    record["error"] = None
    session.apply((name, record))
    assert session.last("LLMCallFailed")["error"] == "model call failed"
    assert session.now.end_reason == "llm_failed: model call failed"
    assert session.now.pending_llm is None


def test_a_denial_records_the_reason_or_just_denied() -> None:
    session, script = started("gated")
    tools = [("w1", "weather", {"city": "A"}), ("w2", "weather", {"city": "B"})]
    session.apply(script.llm_ok(call_of(session.now), tools=tools))
    session.apply(script.approval("w1", False, "too far"))
    assert session.last("ApprovalResolved")["reason"] == "too far"
    assert session.last("ToolCallFailed")["error"] == "denied: too far"
    # One call settled, one still awaits approval: the session still waits for it.
    assert session.now.status == "waiting_for_approval"
    session.apply(script.approval("w2", False))
    assert session.last("ApprovalResolved")["reason"] is None
    assert session.last("ToolCallFailed")["error"] == "denied"


def test_a_denial_while_another_call_runs_leaves_the_session_running() -> None:
    session, script = started("gated")
    tools = [("w1", "weather", {"city": "A"}), ("c1", "calculator", {"expression": "1"})]
    session.apply(script.llm_ok(call_of(session.now), tools=tools))
    assert session.now.status == "waiting_for_approval"
    session.apply(script.approval("w1", False))
    status: str = session.now.status
    assert status == "running"
    assert [t.call_id for t in session.now.pending_tools] == ["c1"]


def test_approved_call_keeps_what_the_model_asked_for() -> None:
    session, script = started("gated")
    session.apply(script.llm_ok(call_of(session.now), tools=[("w1", "weather", {"city": "Rome"})]))
    llm_call = session.last("LLMCallCompleted")["call_id"]
    decision = session.apply(script.approval("w1", True, "ok"))
    (work,) = decision.work
    assert {k: work.record[1][k] for k in ("call_id", "agent", "tool", "arguments_json")} == {
        "call_id": "w1",
        "agent": "gated",
        "tool": "weather",
        "arguments_json": '{"city": "Rome"}',
    }
    (pending,) = session.now.pending_tools
    assert (pending.llm_call_id, pending.status) == (llm_call, "running")
    assert work.record[1]["deadline_ms"] == pending.deadline_ms == script.now_ms + 60_000


# -- fields with schema defaults -----------------------------------------------------------


def test_a_start_without_its_defaulted_fields_means_the_defaults() -> None:
    record = {"event_id": "e", "session_id": "s", "tenant_id": "t", "time_ms": T0}
    record |= {"agent": "demo", "input": "hi"}
    decision = decide(None, "StartSession", record, CATALOG)
    assert decision == decide(None, "StartSession", with_defaults("StartSession", record), CATALOG)
    assert decision.state is not None and not decision.state.keep_open
    assert decision.events[0][1]["metadata"] == {}


def test_commands_without_their_defaulted_fields_mean_the_defaults() -> None:
    session, script = started("gated", keep_open=True)
    minimal: list[tuple[str, dict[str, Any]]] = []

    def send(name: str, **fields: Any) -> None:
        record = {
            "event_id": f"m-{len(minimal)}",
            "session_id": "s-1",
            "tenant_id": "tenant-a",
            "time_ms": script.now_ms + len(minimal),
        } | fields
        minimal.append((name, record))
        decision = decide(session.state, name, record, CATALOG)
        assert decision == decide(session.state, name, with_defaults(name, record), CATALOG)
        assert decision.rejection is None, decision.rejection
        session.apply((name, record))

    send("LLMCallResult", call_id=call_of(session.now), ok=True,
         tool_calls=[{"call_id": "w1", "name": "weather", "arguments_json": "{}"}])  # fmt: skip
    send("Approval", call_id="w1", approved=False)
    send("LLMCallResult", call_id=call_of(session.now), ok=True, content="ok")
    send("UserMessage", text="again")
    send("LLMCallResult", call_id=call_of(session.now), ok=True,
         tool_calls=[{"call_id": "c1", "name": "calculator", "arguments_json": "{}"}])  # fmt: skip
    send("ToolCallResult", call_id="c1", ok=True)
    send("LLMCallResult", call_id=call_of(session.now), ok=False)
    assert session.last("ToolCallCompleted")["output"] == ""
    assert session.last("LLMCallCompleted")["model"] == ""
    assert session.now.tokens_used == 0 and session.now.cost_usd == 0.0
    check_log(session.log, session.state)


def test_events_without_their_defaulted_fields_fold_to_the_same_state() -> None:
    for agent, keep_open in (("quick", True), ("demo", False)):
        session, script = started(agent, keep_open=keep_open)
        tools: list[tuple[str, str, dict[str, Any]]] = [("t1", "calculator", {})]
        usage = {"input_tokens": 0, "output_tokens": 0}
        session.apply(script.llm_ok(call_of(session.now), content=None, tools=tools, **usage))
        session.apply(script.tool("t1"))
        if keep_open:
            session.apply(script.llm_ok(call_of(session.now), content="fine", cost_usd=0.5))
        session.apply(script.cancel(None))
        stripped = [(name, _without_defaults(name, event)) for name, event in session.log]
        assert (
            sum(len(e) - len(s) for (_, s), (_, e) in zip(stripped, session.log, strict=True)) >= 8
        )
        assert rebuild(stripped) == rebuild(session.log) == session.state


def _without_defaults(name: str, event: dict[str, Any]) -> dict[str, Any]:
    """``event`` without each field that a consumer would read back as its schema default."""
    lean = dict(event)
    for key in list(lean):
        rest = {k: v for k, v in lean.items() if k != key}
        try:
            if with_defaults(name, rest)[key] == event[key]:
                lean = rest
        except Exception:  # a required field: the codec refuses the record without it
            continue
    return lean


def test_a_model_call_counts_as_answered_once_it_failed() -> None:
    session, script = started()
    failed = call_of(session.now)
    session.apply(script.llm_fail(failed))
    assert failed in session.now.finished_calls
    assert session.apply(script.llm_ok(failed)).duplicate
