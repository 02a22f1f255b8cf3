"""``agentstream offsets`` on the real broker: every reset kind on an executor, the
engine's refusal to move back and its explicit forward skip, live members refused.

The components run in this process (engine_kit.running); the CLI runs as a user
would run it, between their runs, against this test's topics.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from processors.engine.inbox_reset import progress_positions
from streams.catalogue import Catalogue
from streams.consumer import end_offsets
from tests.integration.engine_kit import (
    check_invariants,
    kafka_settings,
    new_ids,
    produce,
    read_topic,
    running,
    start_session,
    wait_for_terminal,
)
from tests.integration.offsets_kit import Outcome, committed, offsets

pytestmark = pytest.mark.integration


async def test_show_and_every_reset_kind_on_the_llm_executor(
    kafka_bootstrap: str, catalogue: Catalogue, capsys: pytest.CaptureFixture[str]
) -> None:
    kafka = kafka_settings(catalogue, kafka_bootstrap)
    ids = new_ids(12)
    async with running(kafka):
        await produce(kafka, catalogue.inbox.name,
                      [start_session(s, f"What is {i}*3?") for i, s in enumerate(ids)])  # fmt: skip
        await wait_for_terminal(kafka, catalogue, ids)
    before = await read_topic(kafka, catalogue.events.name)
    group = f"{catalogue.prefix}.llm"
    ends = await end_offsets(kafka, catalogue.llm_calls.name, committed_only=True)

    async def run(*a: str) -> Outcome:
        return await offsets(capsys, catalogue, kafka_bootstrap, *a)

    shown = (await run("show", "--json")).json()["partitions"]
    by = {(r["component"], r["partition"]): r for r in shown}
    assert {c for c, _ in by} >= {"engine", "llm", "tools", "projector"}
    assert by[("engine", 0)]["kept_in"].startswith("progress topic")
    assert by[("projector", 0)]["kept_in"] == "Postgres projection_tracking"
    for p in range(catalogue.partitions):
        # Everything is done: no lag anywhere, though the executors' committed offsets
        # stop before the marker that ends the engine's last transaction.
        assert by[("engine", p)]["lag"] == by[("llm", p)]["lag"] == by[("tools", p)]["lag"] == 0
        assert by[("llm", p)]["end"] == ends[p]
    text = await run("show")
    assert text.code == 0 and "KEPT-IN" in text.out and group in text.out

    start = await committed(kafka, group)
    current = {p: start[p][0] if p in start else 0 for p in range(catalogue.partitions)}
    has_records = {p for p in current if ends[p] > 0}
    assert has_records, "the sessions made no LLM call"
    expected = {
        ("--to-earliest",): dict.fromkeys(current, 0),
        ("--to-latest",): ends,
        ("--to-offset", "1"): {p: min(1, ends[p]) for p in current},
        ("--shift-by", "-2"): {p: max(0, current[p] - 2) for p in current},
        ("--to-datetime", "2000-01-01T00:00:00Z"): dict.fromkeys(current, 0),
        ("--to-datetime", "2999-01-01T00:00:00.000"): ends,
        ("--by-duration", "P1D"): dict.fromkeys(current, 0),
        ("--by-duration", "PT0S"): ends,
    }
    for how, new in expected.items():
        outcome = await run("reset", "--component", "llm", *how)
        assert outcome.code == 0, (how, outcome.err)
        assert "GROUP" in outcome.out and "NEW-OFFSET" in outcome.out
        assert outcome.plan(group) == new, how
        assert "dry run: nothing changed" in outcome.err
    assert await committed(kafka, group) == start  # dry runs change nothing

    # --to-offset past the end is clamped to it (kafka-consumer-groups' rule), with a note.
    clamped = await run("reset", "--component", "llm", "--to-offset", "99999")
    assert clamped.plan(group) == ends and "past the end: latest" in clamped.out

    p = min(has_records)
    shifted = await run("reset", "--component", "llm", "--partition", str(p), "--shift-by", "-1",
                        "--execute")  # fmt: skip
    assert shifted.code == 0, shifted.err
    after = await committed(kafka, group)
    assert after[p] == (current[p] - 1, "agentstream:reset")
    assert {q: after[q] for q in after if q != p} == {q: start[q] for q in start if q != p}

    rewound = await run("reset", "--component", "llm", "--to-earliest", "--execute")
    assert rewound.code == 0 and "run again" in rewound.out
    assert {q: o for q, (o, _) in (await committed(kafka, group)).items()} == dict.fromkeys(
        current, 0
    )

    # Forward past unrun work items needs --force-skip, and says what it would skip.
    forward = await run("reset", "--component", "llm", "--to-latest", "--execute")
    assert forward.code == 1 and "--force-skip" in forward.err
    assert "LLMCallWork" in forward.out
    assert {q: o for q, (o, _) in (await committed(kafka, group)).items()} == dict.fromkeys(
        current, 0
    )

    # Run again from the start: every model call is made again, the engine drops the
    # duplicate results by call_id, so the log gains nothing.
    calls = before.names()["LLMCallRequested"]
    async with running(kafka, roles=("engine", "llm")) as components:
        executor = components.executors[0]
        for _ in range(300):
            if executor.finished_count >= calls:
                break
            await asyncio.sleep(0.1)
        assert executor.finished_count == calls  # every call ran again, once
        await asyncio.sleep(1.0)  # the engine reads (and drops) the last results
    after_run = await read_topic(kafka, catalogue.events.name)
    check_invariants(after_run.by_session())
    assert after_run.names() == before.names()


async def test_the_engine_refuses_to_go_back_and_skips_forward_only_when_told(
    kafka_bootstrap: str,
    catalogue: Catalogue,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    kafka = kafka_settings(catalogue, kafka_bootstrap)
    ids = new_ids(6)

    async def run(*a: str) -> Outcome:
        return await offsets(capsys, catalogue, kafka_bootstrap, *a)

    async with running(kafka):
        await produce(kafka, catalogue.inbox.name, [start_session(s, "What is 2*3?") for s in ids])
        await wait_for_terminal(kafka, catalogue, ids)
        # A live engine: --execute refuses and names the member.
        live = await run("reset", "--component", "engine", "--to-latest", "--execute")
        assert live.code == 1 and "live member" in live.err and "aiokafka" in live.err
    partitions = range(catalogue.partitions)

    async def positions() -> dict[int, int]:
        found = await progress_positions(kafka, catalogue, partitions)
        return {p: found[p] or 0 for p in partitions}

    progress = await positions()
    for how in (("--to-earliest",), ("--shift-by", "-1"), ("--to-datetime", "2000-01-01T00:00")):
        refused = await run("reset", "--component", "engine", *how, "--execute")
        assert refused.code == 1 and "cannot be moved back" in refused.err, how
        assert "exactly once" in refused.err
    assert await positions() == progress

    # Commands that arrive while no engine runs, then skipped on purpose.
    skipped = new_ids(3, prefix="skipped")
    await produce(kafka, catalogue.inbox.name, [start_session(s, "never") for s in skipped])
    ends = await end_offsets(kafka, catalogue.inbox.name, committed_only=True)
    untold = await run("reset", "--component", "engine", "--to-latest", "--execute")
    assert untold.code == 1 and "--force-skip" in untold.err
    assert "StartSession" in untold.out and all(s in untold.out for s in skipped)
    dry = await run("reset", "--component", "engine", "--to-latest", "--force-skip")
    assert dry.code == 0 and dry.plan(f"{catalogue.prefix}.engine") == ends
    assert await positions() == progress
    told = await run("reset", "--component", "engine", "--to-latest", "--force-skip", "--execute")
    assert told.code == 0, told.err
    assert await positions() == ends
    group = await committed(kafka, f"{catalogue.prefix}.engine")
    assert {p: group[p] for p in group} == {p: (ends[p], "agentstream:reset") for p in group}

    fresh = new_ids(2, prefix="after")
    with caplog.at_level(logging.WARNING):
        async with running(kafka):
            await produce(kafka, catalogue.inbox.name, [start_session(s, "1+1?") for s in fresh])
            await wait_for_terminal(kafka, catalogue, fresh)
    sessions = (await read_topic(kafka, catalogue.events.name)).by_session()
    assert not set(skipped) & set(sessions)  # skipped, as asked: never applied
    check_invariants(sessions)
    assert "NOT applied" not in caplog.text  # our own reset is not taken for a foreign one
