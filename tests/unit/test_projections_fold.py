"""The read model's fold agrees with the engine's: a sessions row equals ``rebuild`` of its log.

Sessions are driven by the in-memory runtime (real ``decide``, simulated model,
built-in tools) through random scripts: approvals granted and denied, open
sessions that get more messages, cancels, idle timeouts. The log is then
folded by :class:`projections.fold.BatchFold` in random batch splits (each
batch sees only the row the previous one left, as the projector does), and
compared to :func:`processors.core.rebuild`.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
from dataclasses import replace
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.agents.catalog import DEMO_AGENT, AgentCatalog, builtin_catalog
from processors.core import SessionState, rebuild
from processors.testing.inline_runtime import InlineRuntime
from projections.fold import BatchFold, PoisonEvent, SessionRow

GATED = replace(DEMO_AGENT, name="gated", approval=frozenset({"calculator"}))


def catalog() -> AgentCatalog:
    base = builtin_catalog()
    return AgentCatalog(
        agents={**base.agents, "gated": GATED}, models=base.models, tools=base.tools
    )


def fold_in_batches(log: list[tuple[str, dict[str, Any]]], cuts: list[int]) -> SessionRow:
    rows: dict[str, SessionRow] = {}
    bounds = sorted({0, len(log), *(c % (len(log) + 1) for c in cuts)})
    offset = 0
    for lo, hi in itertools.pairwise(bounds):
        fold = BatchFold(copy.deepcopy(rows))
        for name, event in log[lo:hi]:
            fold.apply(0, offset, name, event)
            offset += 1
        rows = fold.sessions
    (row,) = rows.values()
    return row


def assert_same(row: SessionRow, state: SessionState) -> None:
    assert row.status == state.status
    assert row.seq == state.seq
    assert row.steps == state.llm_steps
    assert row.agent == state.agent
    assert row.tenant_id == state.tenant_id
    assert row.tokens == state.tokens_used
    assert abs(row.cost_usd - state.cost_usd) < 1e-9
    assert row.output == state.output
    assert row.end_reason == state.end_reason
    assert row.created_ms == state.started_ms
    assert row.updated_ms == state.updated_ms
    assert row.keep_open == state.keep_open
    assert row.pending_tools == {t.call_id for t in state.pending_tools}
    assert row.awaiting == {
        t.call_id for t in state.pending_tools if t.status == "awaiting_approval"
    }


ACTIONS = st.lists(
    st.sampled_from(["say", "approve", "deny", "cancel", "idle", "noop"]), max_size=6
)
INPUTS = st.sampled_from(
    ["What is 6*7?", "What is 2+3 and the weather in Oslo?", "hello there", "weather in Lima"]
)


async def drive(agent: str, text: str, keep_open: bool, actions: list[str]) -> InlineRuntime:
    runtime = InlineRuntime(catalog())
    await runtime.start("s1", agent, text, keep_open=keep_open)
    for action in actions:
        state = runtime.states["s1"]
        if state.terminal:
            break
        awaiting = [t.call_id for t in state.pending_tools if t.status == "awaiting_approval"]
        if action in ("approve", "deny") and awaiting:
            await runtime.approve("s1", awaiting[0], approved=action == "approve")
        elif action == "say" and state.status == "waiting_for_user":
            await runtime.say("s1", "What is 1+1?")
        elif action == "cancel":
            await runtime.cancel("s1", None)
        elif action == "idle" and state.idle_deadline_ms is not None:
            runtime.now_ms = state.idle_deadline_ms + 1
            await runtime.fire("s1", "idle_timeout")
    return runtime


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    agent=st.sampled_from(["demo", "gated"]),
    text=INPUTS,
    keep_open=st.booleans(),
    actions=ACTIONS,
    cuts=st.lists(st.integers(min_value=0, max_value=60), max_size=4),
)
def test_fold_equals_rebuild(
    agent: str, text: str, keep_open: bool, actions: list[str], cuts: list[int]
) -> None:
    runtime = asyncio.run(drive(agent, text, keep_open, actions))
    log = runtime.logs["s1"]
    state = rebuild(log)
    assert state is not None and state == runtime.states["s1"]
    assert_same(fold_in_batches(log, cuts), state)


def test_every_status_is_reached() -> None:
    async def run() -> set[str]:
        seen: set[str] = set()
        for agent, keep, actions in (
            ("gated", False, ["approve"]),
            ("gated", False, ["deny"]),
            ("demo", True, ["say", "idle"]),
            ("demo", True, ["cancel"]),
        ):
            runtime = await drive(agent, "What is 6*7?", keep, actions)
            log = runtime.logs["s1"]
            for n in range(1, len(log) + 1):
                seen.add(fold_in_batches(log[:n], []).status)
        return seen

    seen = asyncio.run(run())
    assert {"running", "waiting_for_approval", "waiting_for_user", "completed", "cancelled"} <= seen


def test_duplicates_are_skipped_and_orphans_are_poison() -> None:
    runtime = asyncio.run(drive("demo", "What is 6*7?", False, []))
    log = runtime.logs["s1"]
    fold = BatchFold({})
    for i, (name, event) in enumerate(log):
        assert fold.apply(0, i, name, event)
    assert not fold.apply(0, 99, *log[2])
    assert fold.applied == len(log)
    orphan = BatchFold({})
    try:
        orphan.apply(0, 0, *log[1])
    except PoisonEvent as error:
        assert "without SessionStarted" in str(error)
    else:
        raise AssertionError("an event before SessionStarted must be poison")
