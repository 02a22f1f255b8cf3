"""A stalled rebalance callback names what it waits for, with the waiting task's stack."""

from __future__ import annotations

import asyncio
import logging

import pytest

from processors.engine.watchdog import nag_while, task_stack


async def _stuck_in_commit(gate: asyncio.Event) -> None:
    await gate.wait()


async def test_a_long_wait_is_logged_with_where_the_task_is_suspended(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate = asyncio.Event()
    task = asyncio.create_task(_stuck_in_commit(gate))
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING, logger="processors.engine.watchdog"):
        async with nag_while("revoking partition 3", lambda: task_stack(task), every_s=0.02):
            await asyncio.sleep(0.07)
    gate.set()
    await task
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) >= 2, lines
    assert all("revoking partition 3: still waiting after" in line for line in lines)
    assert "_stuck_in_commit (test_watchdog.py:" in lines[0]


async def test_a_quick_wait_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="processors.engine.watchdog"):
        async with nag_while("revoking partition 0", lambda: "x", every_s=0.5):
            await asyncio.sleep(0)
    assert caplog.records == []
    assert task_stack(None) == "(no task under way)"
