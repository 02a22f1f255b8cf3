"""One test per rule of the agent loop, driven command by command through decide."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from processors.agents.catalog import AgentCatalog, builtin_catalog
from processors.agents.model_types import LLMRequest, prompt_hash
from processors.agents.sim_model import SimulatedModel
from processors.agents.tools import builtin_registry
from processors.core import (
    EventOrderError,
    decide,
    evolve,
    rebuild,
    timer_command,
    timers_of,
)
from processors.testing.inline_runtime import InlineRuntime
from tests.unit.test_core_kit import CATALOG, CODEC, Script, Session, check_log


def started(agent: str = "demo", text: str = "hello", **kw: object) -> tuple[Session, Script]:
    session, script = Session(), Script()
    decision = session.apply(script.start(agent, text, **kw))  # type: ignore[arg-type]
    assert decision.rejection is None
    return session, script


def llm_call(session: Session) -> str:
    assert session.now.pending_llm is not None
    return session.now.pending_llm.call_id


# -- start -------------------------------------------------------------------------------


def test_start_emits_started_message_and_first_llm_call_with_full_prompt() -> None:
    session, _ = started(text="what is up?")
    assert session.names() == ["SessionStarted", "UserMessageAdded", "LLMCallRequested"]
    work = session.decisions[0].work
    assert len(work) == 1 and work[0].kind == "llm"
    name, record = work[0].record
    assert name == "LLMCallWork"
    assert [m["role"] for m in record["messages"]] == ["system", "user"]
    assert record["messages"][0]["content"] == CATALOG.agents["demo"].system
    assert [t["name"] for t in record["tools"]] == ["calculator", "weather"]
    assert json.loads(record["tools"][0]["parameters_json"])["required"] == ["expression"]
    requested = session.last("LLMCallRequested")
    assert requested["step"] == 1 and requested["message_count"] == 1
    assert record["prompt_hash"] == requested["prompt_hash"]
    request = LLMRequest.from_work(record)
    assert prompt_hash(request.model, request.messages, request.tools) == record["prompt_hash"]
    assert record["deadline_ms"] == requested["time_ms"] + 120_000
    assert session.now.status == "running"
    started_event = session.log[0][1]
    assert started_event["metadata"]["who"] == "test"
    assert started_event["correlation_id"] == started_event["causation_id"]


def test_unknown_agent_is_rejected_and_creates_nothing() -> None:
    decision = decide(None, *Script().start("nobody"), CATALOG)
    assert decision.rejection == "unknown agent 'nobody'"
    assert decision.state is None and decision.events == ()


def test_same_start_again_is_a_duplicate_and_another_start_is_rejected() -> None:
    session, script = started()
    first = script.sent[0]
    assert session.apply(first).duplicate
    assert session.apply(script.start()).rejection == "session s-1 already exists"


def test_commands_for_a_missing_session_or_another_tenant_are_rejected() -> None:
    script = Script()
    assert decide(None, *script.user("hi"), CATALOG).rejection is not None
    session, script = started()
    script.tenant_id = "intruder"
    decision = session.apply(script.cancel())
    assert decision.rejection is not None and "does not own" in decision.rejection


def test_malformed_and_unknown_commands_are_rejected_not_raised() -> None:
    session, script = started()
    name, record = script.tool("x")
    del record["call_id"]
    assert "missing field" in (session.apply((name, record)).rejection or "")
    assert session.apply(("Reboot", dict(record))).rejection is not None


# -- model results -----------------------------------------------------------------------


def test_answer_completes_the_session_and_records_the_text_once() -> None:
    session, script = started()
    call = llm_call(session)
    session.apply(script.llm_ok(call, content="the answer"))
    assert session.names()[-3:] == ["LLMCallCompleted", "AssistantMessageAdded", "SessionCompleted"]
    assert session.last("LLMCallCompleted")["content"] is None  # the text lives in the message
    assert session.last("AssistantMessageAdded")["text"] == "the answer"
    assert session.last("SessionCompleted")["reason"] == "answered"
    assert session.now.status == "completed" and session.now.output == "the answer"
    assert timers_of(session.now) == ()
    check_log(session.log, session.state)


def test_tool_calls_run_then_the_model_is_asked_again_with_the_results() -> None:
    session, script = started()
    call = llm_call(session)
    tools = [("t1", "calculator", {"expression": "6*7"}), ("t2", "weather", {"city": "Oslo"})]
    decision = session.apply(script.llm_ok(call, content=None, tools=tools))
    assert [w.record[1]["call_id"] for w in decision.work] == ["t1", "t2"]
    assert all(w.kind == "tool" for w in decision.work)
    assert decision.work[0].record[1]["deadline_ms"] == script.now_ms + 60_000
    session.apply(script.tool("t1", output="42"))
    assert session.now.pending_llm is None  # still waiting for t2
    decision = session.apply(script.tool("t2", ok=False, error="no such city"))
    assert session.names()[-2:] == ["ToolCallFailed", "LLMCallRequested"]
    messages = decision.work[0].record[1]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "tool"]
    assert messages[3]["content"] == "42" and messages[3]["tool_call_id"] == "t1"
    assert messages[4]["content"] == "error: no such city" and messages[4]["name"] == "weather"
    assert session.last("LLMCallRequested")["step"] == 2
    check_log(session.log, session.state)


def test_disallowed_tool_fails_at_once_and_nothing_runs() -> None:
    session, script = started()
    call = llm_call(session)
    decision = session.apply(script.llm_ok(call, tools=[("t1", "rm_rf", {})]))
    assert decision.work[-1].kind == "llm"  # straight to the next model call
    assert not any(w.kind == "tool" for w in decision.work)
    failed = session.last("ToolCallFailed")
    assert failed["error"] == "tool rm_rf is not allowed for agent demo"
    assert session.names()[-3:] == ["ToolCallRequested", "ToolCallFailed", "LLMCallRequested"]


def test_mixed_allowed_and_disallowed_tools() -> None:
    session, script = started()
    tools = [("t1", "rm_rf", {}), ("t2", "calculator", {"expression": "1+1"})]
    decision = session.apply(script.llm_ok(llm_call(session), tools=tools))
    assert [w.record[1]["call_id"] for w in decision.work] == ["t2"]
    assert session.now.pending_llm is None
    session.apply(script.tool("t2", output="2"))
    assert session.now.pending_llm is not None


def test_model_failure_fails_the_session() -> None:
    session, script = started()
    session.apply(script.llm_fail(llm_call(session), "rate limited"))
    assert session.names()[-2:] == ["LLMCallFailed", "SessionFailed"]
    assert session.last("SessionFailed")["reason"] == "llm_failed: rate limited"
    assert session.now.status == "failed"


def test_duplicate_and_unknown_results() -> None:
    session, script = started()
    call = llm_call(session)
    result = script.llm_ok(call, tools=[("t1", "calculator", {"expression": "1"})])
    session.apply(result)
    assert session.apply(result).duplicate  # the executor retried
    assert session.apply(script.llm_ok(call)).duplicate  # a second, different result
    assert session.apply(script.llm_ok("who-knows")).rejection == (
        "result for unknown LLM call who-knows"
    )
    session.apply(script.tool("t1"))
    assert session.apply(script.tool("t1")).duplicate
    assert "unknown tool call" in (session.apply(script.tool("t9")).rejection or "")
    check_log(session.log, session.state)


def test_repeated_tool_call_ids_from_the_model_are_made_unique() -> None:
    session, script = started()
    tools = [("call_0", "calculator", {"expression": "1"}), ("call_0", "calculator", {})]
    session.apply(script.llm_ok(llm_call(session), tools=tools))
    ids = [t.call_id for t in session.now.pending_tools]
    assert ids[0] == "call_0" and ids[1] != "call_0"
    assert [c["call_id"] for c in session.last("LLMCallCompleted")["tool_calls"]] == ids
    for call_id in ids:
        session.apply(script.tool(call_id))
    session.apply(script.llm_ok(llm_call(session), tools=[("call_0", "calculator", {})]))
    assert session.now.pending_tools[0].call_id != "call_0"  # already used in this session
    check_log(session.log, session.state)


# -- budget and steps ----------------------------------------------------------------------


def test_budget_exceeded_fails_the_session() -> None:
    session, script = started("budget")
    call = llm_call(session)
    session.apply(script.llm_ok(call, input_tokens=60, output_tokens=20, content="part"))
    assert session.now.tokens_used == 80
    assert session.now.status == "completed"
    session2, script2 = started("budget")
    call = llm_call(session2)
    tools = [("t1", "calculator", {"expression": "1"})]
    decision = session2.apply(script2.llm_ok(call, tools=tools, input_tokens=90, output_tokens=20))
    assert session2.names()[-3:] == ["LLMCallCompleted", "BudgetExceeded", "SessionFailed"]
    assert decision.work == ()  # the tools never run
    exceeded = session2.last("BudgetExceeded")
    assert (exceeded["tokens_used"], exceeded["limit"]) == (110, "tokens>100")
    assert session2.last("SessionFailed")["reason"] == "budget"
    assert session2.last("LLMCallCompleted")["content"] == "an answer"  # kept: no message follows
    assert session2.apply(script2.tool("t1")).duplicate  # late results after the end


def test_cost_budget() -> None:
    session, script = started("budget")
    session.apply(script.llm_ok(llm_call(session), cost_usd=0.02, input_tokens=1))
    assert session.last("BudgetExceeded")["limit"] == "cost_usd>0.01"


def test_max_steps_fails_before_an_extra_model_call() -> None:
    session, script = started("tight")
    session.apply(script.llm_ok(llm_call(session), tools=[("t1", "calculator", {})]))
    decision = session.apply(script.tool("t1"))
    assert session.names()[-2:] == ["ToolCallCompleted", "SessionFailed"]
    assert session.last("SessionFailed")["reason"] == "max_steps"
    assert decision.work == ()


# -- approval ------------------------------------------------------------------------------


def gated_waiting() -> tuple[Session, Script]:
    session, script = started("gated")
    tools = [("w1", "weather", {"city": "Rome"}), ("c1", "calculator", {"expression": "2"})]
    decision = session.apply(script.llm_ok(llm_call(session), tools=tools))
    assert [w.record[1]["call_id"] for w in decision.work] == ["c1"]  # weather waits
    assert session.now.status == "waiting_for_approval"
    assert session.last("ApprovalRequested")["call_id"] == "w1"
    kinds = {t.kind for t in timers_of(session.now)}
    assert kinds == {"approval_timeout", "tool_timeout"}
    return session, script


def test_approval_approved_runs_the_tool() -> None:
    session, script = gated_waiting()
    session.apply(script.tool("c1"))
    assert session.now.status == "waiting_for_approval"
    decision = session.apply(script.approval("w1", True, "fine"))
    assert [w.record[1]["call_id"] for w in decision.work] == ["w1"]
    assert (
        decision.work[0].record[1]["causation_id"] == session.last("ApprovalResolved")["event_id"]
    )
    status: str = session.now.status
    assert status == "running"
    assert session.apply(script.approval("w1", False)).duplicate  # already decided
    session.apply(script.tool("w1", output="sunny"))
    assert session.now.pending_llm is not None
    check_log(session.log, session.state)


def test_approval_denied_tells_the_model() -> None:
    session, script = gated_waiting()
    session.apply(script.approval("w1", False, "not today"))
    assert session.last("ToolCallFailed")["error"] == "denied: not today"
    decision = session.apply(script.tool("c1"))
    messages = decision.work[0].record[1]["messages"]
    assert messages[-2]["content"] == "error: denied: not today"
    assert session.apply(script.approval("w1", True)).duplicate
    assert "unknown tool call" in (session.apply(script.approval("zz", True)).rejection or "")


def test_approval_timeout_denies() -> None:
    session, script = gated_waiting()
    timer = next(t for t in timers_of(session.now) if t.kind == "approval_timeout")
    assert timer.deadline_ms == session.last("ApprovalRequested")["time_ms"] + 30_000
    session.apply(script.timer("approval_timeout", "w1"))
    resolved = session.last("ApprovalResolved")
    assert (resolved["approved"], resolved["reason"]) == (False, "timeout")
    assert session.last("ToolCallFailed")["error"] == "denied: no approval within 30s"
    assert session.apply(script.timer("approval_timeout", "w1")).duplicate


def test_a_result_for_a_call_awaiting_approval_is_rejected() -> None:
    session, script = gated_waiting()
    assert "never ran" in (session.apply(script.tool("w1")).rejection or "")


# -- user messages, keep_open, idle --------------------------------------------------------


def test_keep_open_waits_for_the_user_then_idles_out() -> None:
    session, script = started("quick", keep_open=True)
    assert session.log[0][1]["idle_timeout_ms"] == 10_000  # the agent's default
    session.apply(script.llm_ok(llm_call(session), content="first"))
    assert session.now.status == "waiting_for_user"
    (idle,) = timers_of(session.now)
    assert idle.kind == "idle_timeout" and idle.timer_id == "idle_timeout:s-1"
    decision = session.apply(script.user("more please"))
    assert session.names()[-2:] == ["UserMessageAdded", "LLMCallRequested"]
    assert [m["role"] for m in decision.work[0].record[1]["messages"]] == [
        "user",
        "assistant",
        "user",
    ]
    assert session.apply(script.timer("idle_timeout", None)).duplicate  # not waiting now
    session.apply(script.llm_ok(llm_call(session), content="second"))
    assert session.apply(script.timer("idle_timeout", None)).duplicate  # too early
    script.now_ms = timers_of(session.now)[0].deadline_ms
    session.apply(script.timer("idle_timeout", None))
    completed = session.last("SessionCompleted")
    assert (completed["reason"], completed["output"]) == ("idle_timeout", "second")
    assert session.apply(script.user("hello?")).rejection == "session s-1 has ended"
    check_log(session.log, session.state)


def test_keep_open_with_explicit_idle_timeout() -> None:
    session, _ = started("demo", keep_open=True, idle=1234)
    assert session.now.idle_timeout_ms == 1234


def test_user_message_while_tools_run_joins_the_next_prompt_after_the_results() -> None:
    session, script = started()
    tools = [("t1", "calculator", {"expression": "1"})]
    session.apply(script.llm_ok(llm_call(session), content="let me see", tools=tools))
    decision = session.apply(script.user("also this"))
    assert decision.work == () and session.now.pending_llm is None
    decision = session.apply(script.tool("t1"))
    roles = [m["role"] for m in decision.work[0].record[1]["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "user"]


def test_user_message_while_the_model_thinks_is_answered_too() -> None:
    session, script = started()
    session.apply(script.user("and another thing"))
    session.apply(script.llm_ok(llm_call(session), content="answer one"))
    assert session.names()[-2:] == ["AssistantMessageAdded", "LLMCallRequested"]
    session.apply(script.llm_ok(llm_call(session), content="answer two"))
    assert session.last("SessionCompleted")["output"] == "answer two"


# -- cancel and timers -----------------------------------------------------------------------


def test_cancel_at_any_point_then_everything_is_late() -> None:
    session, script = started()
    call = llm_call(session)
    session.apply(script.cancel("bored"))
    assert session.last("SessionCancelled")["reason"] == "bored"
    assert session.apply(script.cancel()).duplicate
    assert session.apply(script.llm_ok(call)).duplicate
    assert session.apply(script.timer("llm_timeout", call)).duplicate
    assert session.apply(script.approval("x", True)).rejection is not None
    check_log(session.log, session.state)


def test_llm_timeout_fails_and_a_stale_one_is_ignored() -> None:
    session, script = started("quick")
    call = llm_call(session)
    assert session.apply(script.timer("llm_timeout", "other")).duplicate
    session.apply(script.timer("llm_timeout", call))
    assert session.last("LLMCallFailed")["error"] == "timeout after 5s"
    assert session.last("SessionFailed")["reason"] == "llm_failed: timeout after 5s"
    assert session.apply(script.llm_ok(call)).duplicate  # the slow answer arrives after all


def test_tool_timeout_fails_the_call_and_the_loop_goes_on() -> None:
    session, script = started("quick")
    session.apply(script.llm_ok(llm_call(session), tools=[("t1", "calculator", {})]))
    (timer,) = [t for t in timers_of(session.now) if t.kind == "tool_timeout"]
    assert timer.deadline_ms == session.last("ToolCallRequested")["time_ms"] + 2_000
    session.apply(script.timer("tool_timeout", "t1"))
    assert session.last("ToolCallFailed")["error"] == "timeout after 2s"
    assert session.now.pending_llm is not None
    assert session.apply(script.tool("t1")).duplicate


def test_unknown_timer_kind_is_rejected() -> None:
    session, script = started()
    assert session.apply(script.timer("alarm_clock", None)).rejection is not None


def test_timer_command_is_a_valid_command_that_decide_accepts() -> None:
    session, _ = started("quick")
    (timer,) = timers_of(session.now)
    name, record = timer_command(session.now, timer, now_ms=timer.deadline_ms - 3)
    CODEC.encode(name, record)
    assert record["time_ms"] == timer.deadline_ms
    assert timer_command(session.now, timer, timer.deadline_ms)[1]["event_id"] == record["event_id"]
    session.apply((name, record))
    assert session.now.status == "failed"


def test_deadlines_come_from_the_log_not_from_a_changed_catalog() -> None:
    session, script = started("quick")
    started_event = session.log[0][1]
    assert started_event["llm_timeout_ms"] == 5_000
    assert started_event["metadata"] == {"who": "test"}  # the caller's labels only
    quick = CATALOG.agents["quick"]
    slower = AgentCatalog(
        {**CATALOG.agents, "quick": replace(quick, tool_timeout_s=999.0)},
        CATALOG.models,
        CATALOG.tools,
    )
    session.agents = slower
    session.apply(script.llm_ok(llm_call(session), tools=[("t1", "calculator", {})]))
    assert session.now.pending_tools[0].deadline_ms == script.now_ms + 2_000
    assert rebuild(session.log) == session.state


def test_a_session_whose_agent_disappeared_fails_cleanly() -> None:
    session, script = started()
    session.agents = AgentCatalog({}, CATALOG.models, CATALOG.tools)
    session.apply(script.llm_ok(llm_call(session)))
    assert session.last("SessionFailed")["reason"] == "agent 'demo' is no longer defined"


# -- evolve and rebuild ------------------------------------------------------------------------


def test_evolve_refuses_gaps_and_events_before_the_start() -> None:
    session, _ = started()
    name, event = session.log[1]
    with pytest.raises(EventOrderError):
        evolve(None, name, event)
    with pytest.raises(EventOrderError):
        evolve(session.state, name, {**event, "seq": 9})


def test_rebuild_skips_events_a_snapshot_already_holds() -> None:
    session, script = started()
    middle = rebuild(session.log[:2])
    session.apply(script.llm_ok(llm_call(session)))
    assert rebuild(session.log, middle) == session.state
    assert rebuild([], None) is None


# -- the whole demo, driven by the simulated model and the built-in tools -------------------


async def test_full_demo_session_with_simulated_model_and_builtin_tools() -> None:
    runtime = InlineRuntime(builtin_catalog())
    await runtime.start("demo-1", "demo", "what is 6*7 and the weather in Paris?")
    state = runtime.states["demo-1"]
    log = runtime.logs["demo-1"]
    assert state.status == "completed"
    assert state.llm_steps == 2
    assert runtime.events("demo-1").count("ToolCallCompleted") == 2
    assert "42" in (state.output or "") and "Paris" in (state.output or "")
    check_log(log, state)
    for name, event in log:
        CODEC.encode(name, event)
    again = InlineRuntime(builtin_catalog())
    await again.start("demo-1", "demo", "what is 6*7 and the weather in Paris?")
    assert again.logs["demo-1"] == log  # the whole run is deterministic


async def test_inline_runtime_approval_and_keep_open() -> None:
    runtime = InlineRuntime(CATALOG)
    await runtime.start("g", "gated", "weather in Lima", keep_open=True)
    call = runtime.states["g"].pending_tools[0].call_id
    await runtime.approve("g", call)
    assert runtime.states["g"].status == "waiting_for_user"
    assert "Lima" in (runtime.states["g"].output or "")
    await runtime.say("g", "thanks")
    await runtime.cancel("g")
    assert runtime.events("g")[-1] == "SessionCancelled"
    check_log(runtime.logs["g"], runtime.states["g"])


async def test_rebuilding_many_sessions_needs_no_model_and_no_tool() -> None:
    live = InlineRuntime(builtin_catalog())
    questions = ["what is 6*7?", "weather in Oslo and 2**8", "hello there", "what is 1/0?"]
    for i in range(300):
        await live.start(f"s{i}", "demo", questions[i % len(questions)])
    # Replay has no model and no tool at all: results are events.
    for session_id, log in live.logs.items():
        assert rebuild(log) == live.states[session_id]
        check_log(log, live.states[session_id])
    assert {s.status for s in live.states.values()} == {"completed"}


async def test_a_model_that_always_fails_fails_the_session_once() -> None:
    runtime = InlineRuntime(builtin_catalog(), model=SimulatedModel(fail_all=True))
    await runtime.start("f", "demo", "what is 6*7?")
    assert runtime.events("f")[-2:] == ["LLMCallFailed", "SessionFailed"]
    assert (runtime.states["f"].end_reason or "").startswith("llm_failed: ")
    failing_tools = InlineRuntime(builtin_catalog(), tools=builtin_registry(fail_all=True))
    await failing_tools.start("t", "demo", "what is 6*7?")
    assert "ToolCallFailed" in failing_tools.events("t")
    assert failing_tools.states["t"].status == "completed"  # the model saw the error and answered
