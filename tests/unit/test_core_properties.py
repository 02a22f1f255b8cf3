"""Property tests: random command sequences against the core's invariants.

Hypothesis draws a sequence of abstract moves (a model answer with random
tool calls, a tool result, a duplicate, a bogus call, an approval, a user
message, a cancel, a timer, a clock jump...). Each move becomes a concrete
command from the state at that point (so results usually match pending calls,
and sometimes deliberately do not). After every command the kit checks the
decision (schema fit, seq, fold equality, determinism); at the end the whole
log is checked (seq 1..n, unique ids, one terminal event last, one result per
call, rebuild == live state), plus liveness: a session that has not ended
always has a durable timer, so it can never hang.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from processors.core import (
    SessionState,
    decode_state,
    encode_state,
    evolve_private,
    private_copy,
    rebuild,
    timers_of,
)
from tests.unit.test_core_kit import Script, Session, check_log

WEIGHTS = {
    "llm_ok": 2,
    "llm_tools": 8,
    "llm_fail": 1,
    "tool_ok": 8,
    "tool_fail": 2,
    "resend": 3,
    "bogus_llm": 1,
    "bogus_tool": 1,
    "approve": 4,
    "deny": 2,
    "bogus_approval": 1,
    "user": 3,
    "cancel": 1,
    "timer": 1,
    "timer_stale": 1,
    "jump": 1,
    "start_again": 1,
    "start_other": 1,
}
MOVES = tuple(move for move, weight in WEIGHTS.items() for _ in range(weight))
TOOLS = ("calculator", "weather", "forbidden")
AGENTS = ("demo", "gated", "budget", "tight", "quick")


def _pick(data: st.DataObject, options: list[str], fallback: str) -> str:
    if not options:
        return fallback
    return data.draw(st.sampled_from(options))


def _command(
    move: str, state: SessionState, script: Script, data: st.DataObject
) -> tuple[str, dict[str, Any]] | None:
    pending_llm = state.pending_llm.call_id if state.pending_llm else "no-llm-call"
    running = [t.call_id for t in state.pending_tools if t.status == "running"]
    awaiting = [t.call_id for t in state.pending_tools if t.status == "awaiting_approval"]
    if move == "llm_ok":
        tokens = data.draw(st.integers(0, 90))
        return script.llm_ok(
            pending_llm, content=data.draw(st.text(max_size=8)), input_tokens=tokens
        )
    if move == "llm_tools":
        count = data.draw(st.integers(1, 3))
        tools = [
            (
                data.draw(st.sampled_from(["", "dup", f"t{script.counter}-{i}"])),
                data.draw(st.sampled_from(TOOLS)),
                {"expression": "1+1"},
            )
            for i in range(count)
        ]
        tokens = data.draw(st.integers(0, 90))
        return script.llm_ok(pending_llm, content=None, tools=tools, input_tokens=tokens)
    if move == "llm_fail":
        return script.llm_fail(pending_llm)
    if move in ("tool_ok", "tool_fail"):
        target = _pick(data, running, "no-tool-call")
        return script.tool(target, ok=move == "tool_ok")
    if move == "resend":
        if not script.sent:
            return None
        resent: tuple[str, dict[str, Any]] = data.draw(st.sampled_from(script.sent))
        return resent
    if move == "bogus_llm":
        return script.llm_ok("bogus-llm")
    if move == "bogus_tool":
        return script.tool("bogus-tool")
    if move in ("approve", "deny"):
        return script.approval(_pick(data, awaiting, "no-approval"), move == "approve", "why")
    if move == "bogus_approval":
        return script.approval("bogus-approval", True)
    if move == "user":
        return script.user(data.draw(st.text(max_size=12)))
    if move == "cancel":
        return script.cancel()
    if move in ("timer", "timer_stale"):
        timers = timers_of(state)
        if move == "timer" and timers:
            timer = data.draw(st.sampled_from(timers))
            script.now_ms = max(script.now_ms, timer.deadline_ms - data.draw(st.integers(0, 2)))
            return script.timer(timer.kind, timer.call_id)
        kind = data.draw(st.sampled_from(["llm_timeout", "tool_timeout", "approval_timeout"]))
        return script.timer(kind, data.draw(st.sampled_from(["x", pending_llm, *running])))
    if move == "jump":
        script.now_ms += data.draw(st.integers(0, 400_000))
        return None
    if move == "start_again":
        return script.sent[0]
    return script.start()


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_command_sequences_keep_every_invariant(data: st.DataObject) -> None:
    script = Script(session_id=f"s-{data.draw(st.integers(0, 3))}")
    session = Session()
    agent = data.draw(st.sampled_from(AGENTS))
    keep_open = data.draw(st.booleans())
    session.apply(script.start(agent, data.draw(st.text(max_size=20)), keep_open=keep_open))
    moves = data.draw(st.lists(st.sampled_from(MOVES), min_size=3, max_size=40))
    for move in moves:
        state = session.now
        command = _command(move, state, script, data)
        if command is None:
            continue
        decision = session.apply(command)
        if move in ("bogus_llm", "bogus_tool") and not state.terminal:
            assert decision.rejection is not None
        if move == "start_again":
            assert decision.duplicate
        if move == "start_other":
            assert decision.rejection is not None
        if state.terminal:
            assert decision.events == ()
        _check_state(session.now)
    check_log(session.log, session.state)
    final = session.now
    event(f"ended: {final.end_reason if final.terminal else final.status}")
    for name in {"ApprovalResolved", "ToolCallCompleted", "BudgetExceeded"} & set(session.names()):
        event(f"saw {name}")
    assert decode_state(encode_state(final)) == final
    cut = data.draw(st.integers(0, len(session.log)))
    snapshot = rebuild(session.log[:cut])
    restored = decode_state(encode_state(snapshot)) if snapshot is not None else None
    assert rebuild(session.log[cut:], restored) == final
    _check_private_fold(session.log, cut, final)


def _check_private_fold(
    log: list[tuple[str, dict[str, Any]]], cut: int, final: SessionState
) -> None:
    """Replay's in-place fold gives what evolve gives, and never touches the state it copied."""
    shared = rebuild(log[:cut])
    before = rebuild(log[:cut])
    state = private_copy(shared) if shared is not None else None
    for name, event_ in log[cut:]:
        state = evolve_private(state, name, event_)
    assert state == final
    assert shared == before, "the fold changed a state it did not own"
    if cut < len(log) and shared is not None:
        assert state is not shared


def _check_state(state: SessionState) -> None:
    """Liveness and consistency of any state the core can reach."""
    if state.terminal:
        assert timers_of(state) == ()
        assert state.pending_llm is None and state.pending_tools == ()
        return
    assert timers_of(state), f"a {state.status} session with no timer could hang forever"
    awaiting = any(t.status == "awaiting_approval" for t in state.pending_tools)
    assert (state.status == "waiting_for_approval") == awaiting
    if state.status == "waiting_for_user":
        assert state.keep_open and state.pending_llm is None and not state.pending_tools
    if state.pending_llm is not None:
        assert not state.pending_tools
    if not state.pending_tools:
        assert state.deferred == ()
    ids = [t.call_id for t in state.pending_tools]
    assert len(ids) == len(set(ids)) and not set(ids) & state.finished_calls


def _valid_command(
    state: SessionState, script: Script, data: st.DataObject
) -> tuple[str, dict[str, Any]]:
    """A command that fits ``state``: answer what is pending, or move a waiting session on."""
    if state.pending_llm is not None:
        call = state.pending_llm.call_id
        tokens = data.draw(st.integers(0, 40))
        if data.draw(st.integers(0, 2)) == 0:
            return script.llm_ok(call, content="done", input_tokens=tokens)
        names = data.draw(st.lists(st.sampled_from(TOOLS), min_size=1, max_size=3))
        tools = [(f"t{script.counter}-{i}", n, {"city": "Oslo"}) for i, n in enumerate(names)]
        return script.llm_ok(call, content=None, tools=tools, input_tokens=tokens)
    running = [t.call_id for t in state.pending_tools if t.status == "running"]
    awaiting = [t.call_id for t in state.pending_tools if t.status == "awaiting_approval"]
    choice = data.draw(st.sampled_from(running + awaiting))
    if choice in running:
        return script.tool(choice, ok=data.draw(st.booleans()))
    return script.approval(choice, data.draw(st.booleans()))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_sessions_driven_to_their_end_keep_every_invariant(data: st.DataObject) -> None:
    script, session = Script(), Session()
    agent = data.draw(st.sampled_from(AGENTS))
    session.apply(script.start(agent, "go", keep_open=data.draw(st.booleans())))
    turns = redelivered = 0
    for _ in range(90):
        state = session.now
        if state.terminal:
            break
        if state.status == "waiting_for_user":
            turns += 1
            if turns > 2:
                script.now_ms = timers_of(state)[0].deadline_ms
                command = script.timer("idle_timeout", None)
            else:
                command = script.user("again")
        elif redelivered < 10 and data.draw(st.integers(0, 9)) == 0:
            redelivered += 1
            command = data.draw(st.sampled_from(script.sent))  # a redelivered command
        else:
            command = _valid_command(state, script, data)
        decision = session.apply(command)
        assert decision.rejection is None, decision.rejection
        _check_state(session.now)
    assert session.now.terminal
    event(f"ended: {session.now.end_reason}")
    check_log(session.log, session.state)
    assert decode_state(encode_state(session.now)) == session.now
