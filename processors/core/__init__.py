"""The pure session core: ``decide`` and ``evolve`` over frozen dataclasses.

No Kafka, no Postgres, no clock, no randomness, no asyncio: the runtime around
it reads commands, calls :func:`decide`, writes the events and work items it
returns, and folds events with :func:`evolve` / :func:`rebuild` on recovery.

Modules::

    state     SessionState, PendingLLM, PendingTool, Timer, WorkItem, Decision, Record
    evolve    evolve, rebuild: the only way state changes (evolve_private: replay's in-place fold)
    loop      the agent loop's moves (ask the model, request tools, answer) and id derivation
    decide    decide: one command -> events, work items, or duplicate / rejection
    timers    timers_of (durable timers of a state), timer_command (a due timer as a command)
    snapshot  encode_state / decode_state (versioned bytes for Postgres)
"""

from processors.core.decide import decide
from processors.core.evolve import (
    EventOrderError,
    evolve,
    evolve_private,
    private_copy,
    rebuild,
)
from processors.core.loop import NAMESPACE, derive_id
from processors.core.snapshot import SnapshotError, decode_state, encode_state
from processors.core.state import (
    Decision,
    PendingLLM,
    PendingTool,
    Record,
    SessionState,
    Status,
    Timer,
    TimerKind,
    WorkItem,
)
from processors.core.timers import timer_command, timers_of

__all__ = [
    "NAMESPACE",
    "Decision",
    "EventOrderError",
    "PendingLLM",
    "PendingTool",
    "Record",
    "SessionState",
    "SnapshotError",
    "Status",
    "Timer",
    "TimerKind",
    "WorkItem",
    "decide",
    "decode_state",
    "derive_id",
    "encode_state",
    "evolve",
    "evolve_private",
    "private_copy",
    "rebuild",
    "timer_command",
    "timers_of",
]
