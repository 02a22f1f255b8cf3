"""``agentstream replay`` on the real log: a session's state at a seq or a moment, the
diff between two points, its events in order; a window audit from a moment (by shape,
and folded) sees only that window and names a record appended twice."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import pytest

from agentstream.cli import main as cli
from processors.core import rebuild
from schemas import Codec
from streams.catalogue import Catalogue
from streams.clients import new_producer
from streams.partitioner import session_partition
from tests.integration.engine_kit import (
    kafka_settings,
    new_ids,
    produce,
    running,
    start_session,
    wait_for_terminal,
)

pytestmark = pytest.mark.integration


async def _replay(
    capsys: pytest.CaptureFixture[str], catalogue: Catalogue, bootstrap: str, *args: str
) -> tuple[int, list[dict[str, Any]]]:
    capsys.readouterr()
    base = ["--bootstrap", bootstrap, "--prefix", catalogue.prefix,
            "--partitions", str(catalogue.partitions), "--no-snapshots"]  # fmt: skip
    code = await asyncio.to_thread(cli, ["replay", *args, *base])
    return code, [json.loads(line) for line in capsys.readouterr().out.splitlines()]


async def test_time_travel_and_a_window_audit(
    kafka_bootstrap: str, catalogue: Catalogue, capsys: pytest.CaptureFixture[str]
) -> None:
    kafka = kafka_settings(catalogue, kafka_bootstrap)
    early, late = new_ids(6, prefix="early"), new_ids(6, prefix="late")

    async def run(*a: str) -> tuple[int, list[dict[str, Any]]]:
        return await _replay(capsys, catalogue, kafka_bootstrap, *a)

    async with running(kafka):
        await produce(
            kafka, catalogue.inbox.name, [start_session(s, "What is 6*7?") for s in early]
        )
        await wait_for_terminal(kafka, catalogue, early)
        await asyncio.sleep(1.0)
        window = dt.datetime.now(dt.UTC)
        await produce(kafka, catalogue.inbox.name, [start_session(s, "What is 2*9?") for s in late])
        sessions = await wait_for_terminal(kafka, catalogue, late)
    victim = late[0]
    log = sessions[victim]

    code, (at3,) = await run("--session", victim, "--at", "3")
    assert code == 0 and at3["seq"] == 3 and at3["events_applied"] == 3
    expected = rebuild(log[:3])
    assert expected is not None and at3["state"]["status"] == expected.status
    assert len(at3["state"]["messages"]) == len(expected.messages)

    moment = log[4][1]["time_ms"]
    stamp = dt.datetime.fromtimestamp(moment / 1000, dt.UTC).isoformat()
    code, (then,) = await run("--session", victim, "--at", stamp)
    assert code == 0 and then["seq"] == max(e["seq"] for _, e in log if e["time_ms"] <= moment)

    code, (changes,) = await run("--session", victim, "--diff", "2", str(len(log)))
    assert code == 0
    assert [e["seq"] for e in changes["events"]] == list(range(3, len(log) + 1))
    assert changes["changed"]["status"]["to"] == "completed"

    code, lines = await run("--session", victim, "--events")
    assert code == 0 and [(e["seq"], e["type"]) for e in lines] == [
        (e["seq"], name) for name, e in log
    ]
    code, lines = await run("--session", victim, "--events", "--at", "4")
    assert code == 0 and len(lines) == 4
    assert await asyncio.to_thread(cli, ["replay", "--session", victim, "--at", "soon"]) == 2

    # The window from the moment between the two batches holds the late sessions only.
    since = window.isoformat()
    for depth in ([], ["--fold"]):
        code, lines = await run("--from-datetime", since, *depth)
        summary = lines[-1]["summary"]
        assert code == 0, lines
        assert summary["sessions"] == len(late) and summary["ended"] == len(late)
        assert summary["events"] == sum(len(sessions[s]) for s in late)
        assert summary["events_per_s"] > 0

    # A record appended twice is named, with its session, in every kind of audit.
    name, event = log[-2]
    producer = new_producer(kafka)
    await producer.start()
    try:
        await producer.send_and_wait(
            catalogue.events.name, Codec().encode(name, event), key=victim.encode(),
            partition=session_partition(victim, catalogue.partitions),
        )  # fmt: skip
    finally:
        await producer.stop()
    for args in (["--from-datetime", since], ["--from-datetime", since, "--fold"], ["--shape"]):
        code, lines = await run(*args)
        assert code == 1, args
        assert {line["session_id"] for line in lines if "problem" in line} == {victim}, args
