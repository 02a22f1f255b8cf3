"""Say what a rebalance callback is waiting for when it takes long.

A rebalance callback that does not return holds the whole consumer group: no
member gets partitions until it rejoins. The engine's revocation waits for each
lane's batch under way to commit, and its assignment rebuilds partitions; when
one of them stalls, the worker's log must say where, with the suspended
coroutine's stack, or the stall cannot be told apart from a slow broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

log = logging.getLogger(__name__)

NAG_AFTER_S = 5.0
"""Warn this long after the wait began, and as often again while it lasts."""


def task_stack(task: asyncio.Task[object] | None, limit: int = 12) -> str:
    """Where ``task`` is suspended: innermost frame first, each awaited by the next.

    Follows the chain of awaits (``cr_await``) down through coroutines and awaited
    tasks; ``Task.get_stack`` shows only the outermost coroutine's frame, which for
    a lane is always its loop, not the commit it waits for.
    """
    if task is None or task.done():
        return "(no task under way)"
    frames: list[str] = []
    awaited: object = task.get_coro()
    while awaited is not None and len(frames) < limit:
        if isinstance(awaited, asyncio.Task):
            awaited = awaited.get_coro()
            continue
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is None:
            break
        name = frame.f_code.co_filename.rsplit("/", 1)[-1]
        frames.append(f"{frame.f_code.co_name} ({name}:{frame.f_lineno})")
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return " <- ".join(reversed(frames)) if frames else "(unknown)"


@contextlib.asynccontextmanager
async def nag_while(
    what: str, detail: Callable[[], str], every_s: float = NAG_AFTER_S
) -> AsyncIterator[None]:
    """Log a warning every ``every_s`` while the body runs, naming ``what`` and
    ``detail()`` (e.g. a task's stack); silent when the body is quick."""
    began = time.monotonic()

    async def nag() -> None:
        while True:
            await asyncio.sleep(every_s)
            log.warning(
                "%s: still waiting after %.0f s; %s", what, time.monotonic() - began, detail()
            )

    nagger = asyncio.create_task(nag(), name=f"nag: {what}")
    try:
        yield
    finally:
        nagger.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await nagger
