"""``agentstream replay``: rebuild sessions from the event log and audit it.

``--session ID`` rebuilds one session (reading only its partition) and prints
its state as JSON. Without it, every session of the chosen partitions (default:
all) is rebuilt and checked; progress goes to stderr, each problem and a summary
to stdout as JSON lines. The checks (processors/engine/log_audit.py): contiguous seq,
no event id twice, one terminal event and nothing after it, no call with two
results, and each session's Postgres snapshot equal to the fold of its log at
the snapshot's seq (``--no-snapshots`` skips Postgres). Exit 1 on any problem.

Replay reads the log only (read_committed, no consumer group): it never calls a
model or a tool and never writes anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

from agentstream.commands.topics import add_kafka_arguments, guarded, settings_from_args
from processors.core import SessionState
from processors.engine.log_audit import LogAuditor, LoggedEvent, SessionAudit
from streams.settings import KafkaSettings


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="rebuild sessions from the event log and audit it",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--session", help="rebuild this session only and print its state")
    parser.add_argument(
        "--partition", type=int, action="append", default=[],
        help="audit this events partition (repeatable; default: all)",
    )  # fmt: skip
    parser.add_argument(
        "--no-snapshots", action="store_true", help="do not compare with Postgres snapshots"
    )
    parser.add_argument("--database-url", help="Postgres (AGENTSTREAM_DATABASE_URL)")
    add_kafka_arguments(parser)
    parser.set_defaults(func=run)


async def _read_partition(
    settings: KafkaSettings, topic: str, partition: int, session_id: str | None
) -> AsyncIterator[LoggedEvent]:
    """The committed events of one partition, oldest first (only ``session_id``'s if set)."""
    from schemas import Codec, SchemaError
    from streams.consumer import read_to_end

    codec = Codec()
    wanted = session_id.encode() if session_id is not None else None
    async for record in read_to_end(settings, topic, [partition], fetch_max_bytes=16 << 20):
        if wanted is not None and record.key != wanted:
            continue
        try:
            name, event = codec.decode(record.value)
        except SchemaError as error:
            key = record.key.decode(errors="replace") if record.key else "?"
            name, event = "Undecodable", {"session_id": key, "error": str(error)}
        yield record.offset, name, event


async def _snapshots(
    database_url: str, stream: str, partition: int, session_id: str | None
) -> dict[str, SessionState]:
    from processors.core import decode_state
    from processors.engine.snapshot_store import SnapshotStore
    from processors.postgres import create_pool

    connection_pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        store = SnapshotStore(connection_pool, stream)
        if session_id is not None:
            rows = await store.load([session_id])
        else:
            rows = await store.load_partition(partition)
        return {sid: decode_state(row.state) for sid, row in rows.items()}
    finally:
        await connection_pool.close()


def _state_json(audit: SessionAudit) -> dict[str, Any]:
    state = audit.state
    report: dict[str, Any] = {"session_id": audit.session_id, "events": audit.events}
    if state is not None:
        report.update(
            tenant_id=state.tenant_id,
            agent=state.agent,
            status=state.status,
            seq=state.seq,
            messages=len(state.messages),
            llm_steps=state.llm_steps,
            pending_llm=state.pending_llm.call_id if state.pending_llm else None,
            pending_tools=[t.call_id for t in state.pending_tools],
            tokens_used=state.tokens_used,
            cost_usd=round(state.cost_usd, 6),
            output=state.output,
            end_reason=state.end_reason,
        )
    report["snapshot_agrees"] = audit.snapshot_agrees
    report["problems"] = audit.problems
    return report


async def _replay(args: argparse.Namespace, settings: KafkaSettings) -> int:
    from processors.settings import DEFAULT_DATABASE_URL
    from streams.catalogue import Catalogue
    from streams.partitioner import session_partition

    events_topic = Catalogue.from_settings(settings).events.name
    database_url = args.database_url or DEFAULT_DATABASE_URL
    if args.session is not None:
        partitions = [session_partition(args.session, settings.partitions)]
    else:
        partitions = args.partition or list(range(settings.partitions))
    bad = [p for p in partitions if not 0 <= p < settings.partitions]
    if bad:
        print(
            f"error: no partition {bad[0]} (the topics have {settings.partitions})", file=sys.stderr
        )
        return 2
    started = time.perf_counter()
    totals = {"sessions": 0, "events": 0, "ended": 0, "with_problems": 0, "snapshots_checked": 0}
    for partition in partitions:
        snapshots = (
            {}
            if args.no_snapshots
            else await _snapshots(database_url, events_topic, partition, args.session)
        )
        auditor = LogAuditor(snapshots)  # folds as it reads: no event is kept
        last_print = time.perf_counter()
        async for offset, name, event in _read_partition(
            settings, events_topic, partition, args.session
        ):
            auditor.add(offset, name, event)
            if time.perf_counter() - last_print >= 1.0:
                last_print = time.perf_counter()
                print(f"  partition {partition}: {auditor.events:,} events read", file=sys.stderr)
        audits = auditor.finish()
        if args.session is not None:
            audit = audits.get(args.session)
            if audit is None:
                print(f"error: session {args.session!r} has no events", file=sys.stderr)
                return 1
            print(json.dumps(_state_json(audit), ensure_ascii=False))
            return 0 if audit.ok else 1
        for audit in audits.values():
            totals["sessions"] += 1
            totals["events"] += audit.events
            totals["ended"] += audit.state is not None and audit.state.terminal
            totals["snapshots_checked"] += audit.snapshot_agrees is not None
            if not audit.ok:
                totals["with_problems"] += 1
                for problem in audit.problems:
                    print(json.dumps({"session_id": audit.session_id, "problem": problem}))
        print(
            f"  partition {partition}: {len(audits):,} sessions, {auditor.events:,} events",
            file=sys.stderr,
        )
    seconds = time.perf_counter() - started
    summary = dict(totals, partitions=partitions, seconds=round(seconds, 3))
    print(json.dumps({"summary": summary}))
    return 1 if totals["with_problems"] else 0


@guarded
def run(args: argparse.Namespace) -> int:
    return asyncio.run(_replay(args, settings_from_args(args)))
