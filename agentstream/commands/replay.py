"""``agentstream replay``: rebuild sessions from the event log, travel in time, audit it.

``--session ID`` rebuilds one session (reading only its partition) and prints its
state as JSON; ``--at SEQ|ISO-8601`` prints every field of the state as it was then,
``--diff A B`` what changed between two points and the events in between, ``--events``
the events in order with their types (up to ``--at`` if given).

Without ``--session``, every session of the chosen partitions (default: all) is
rebuilt and checked; progress goes to stderr, each problem and a summary to stdout as
JSON lines. The checks (processors/engine/log_audit.py): contiguous seq, no event id
twice, one terminal event and nothing after it, no call with two results, and each
session's Postgres snapshot equal to the fold of its log at the snapshot's seq
(``--no-snapshots`` skips Postgres). ``--from-datetime T`` audits the window from T
on: by the events' shape (envelopes only, fast); ``--fold`` also folds the sessions
that start in the window (``--shape`` skips folding on a whole-log audit). Exit 1 on
any problem.

Replay reads the log only (read_committed, no consumer group): it never calls a
model or a tool and never writes anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from agentstream.commands.topics import add_kafka_arguments, guarded, settings_from_args
from processors.core import SessionState
from processors.engine.log_audit import LogAuditor, LoggedEvent, SessionAudit
from streams.settings import KafkaSettings


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="rebuild sessions from the event log, travel in time, audit it",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--session", help="rebuild this session only and print its state")
    parser.add_argument("--at", metavar="SEQ|ISO-8601", help="the session's state at that point")
    parser.add_argument(
        "--diff", nargs=2, metavar=("A", "B"), help="what changed between two points"
    )
    parser.add_argument("--events", action="store_true", help="the session's events, in order")
    parser.add_argument(
        "--partition", type=int, action="append", default=[],
        help="audit this events partition (repeatable; default: all)",
    )  # fmt: skip
    parser.add_argument(
        "--from-datetime", metavar="ISO-8601", help="audit the window from this moment on"
    )
    depth = parser.add_mutually_exclusive_group()
    depth.add_argument("--fold", action="store_true", help="fold every session (window audit)")
    depth.add_argument("--shape", action="store_true", help="check the log's shape only")
    parser.add_argument(
        "--no-snapshots", action="store_true", help="do not compare with Postgres snapshots"
    )
    parser.add_argument("--database-url", help="Postgres (AGENTSTREAM_DATABASE_URL)")
    add_kafka_arguments(parser)
    parser.set_defaults(func=run)


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


def _print(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, default=str))


async def _session(args: argparse.Namespace, settings: KafkaSettings, topic: str) -> int:
    from agentstream.replay_log import read_events
    from agentstream.time_travel import Point, diff_json, event_json, fold_to, moment_json, up_to
    from streams.partitioner import session_partition

    session_id = args.session
    points = [Point.parse(p) for p in (args.diff or [])]
    at = Point.parse(args.at) if args.at else None
    partition = session_partition(session_id, settings.partitions)
    events: list[LoggedEvent] = [
        logged async for logged in read_events(settings, topic, partition, key=session_id.encode())
    ]
    if not events:
        print(f"error: session {session_id!r} has no events", file=sys.stderr)
        return 1
    if args.events:
        for logged in up_to(events, at):
            _print(event_json(logged))
        return 0
    if points:
        first, second = (fold_to(events, p) for p in points)
        _print(diff_json(session_id, first, second))
        return 1 if first.problem or second.problem else 0
    if at is not None:
        moment = fold_to(events, at)
        _print(moment_json(session_id, moment))
        return 1 if moment.problem or moment.state is None else 0
    snapshots = (
        {}
        if args.no_snapshots
        else await _snapshots(_database_url(args), topic, partition, session_id)
    )
    auditor = LogAuditor(snapshots)
    for offset, name, event in events:
        auditor.add(offset, name, event)
    audit = auditor.finish()[session_id]
    _print(_state_json(audit))
    return 0 if audit.ok else 1


def _database_url(args: argparse.Namespace) -> str:
    from processors.settings import DEFAULT_DATABASE_URL

    return str(args.database_url or DEFAULT_DATABASE_URL)


async def _audit(args: argparse.Namespace, settings: KafkaSettings, topic: str) -> int:
    from agentstream.replay_log import WindowReport, audit_window, summary
    from streams.offsets import parse_datetime_ms

    partitions = args.partition or list(range(settings.partitions))
    bad = [p for p in partitions if not 0 <= p < settings.partitions]
    if bad:
        print(
            f"error: no partition {bad[0]} (the topics have {settings.partitions})", file=sys.stderr
        )
        return 2
    from_ms = parse_datetime_ms(args.from_datetime) if args.from_datetime else None
    # A window is audited by its shape unless asked to fold; the whole log is folded.
    fold = args.fold or (from_ms is None and not args.shape)
    total = WindowReport()
    for partition in partitions:
        snapshots = {}
        if fold and not args.no_snapshots:
            snapshots = {partition: await _snapshots(_database_url(args), topic, partition, None)}
        report = await audit_window(
            settings, topic, [partition], from_ms, fold=fold, snapshots=snapshots
        )
        for session_id, problem in report.problems:
            _print({"session_id": session_id, "problem": problem})
        print(
            f"  partition {partition}: {len(report.full) + len(report.tails):,} sessions,"
            f" {report.events:,} events, {report.events_per_s:,.0f} events/s",
            file=sys.stderr,
        )
        total.events += report.events
        total.seconds += report.seconds
        total.cpu_seconds += report.cpu_seconds
        total.full.update(report.full)
        total.tails.update(report.tails)
        total.undecodable += report.undecodable
    result = summary(total, partitions, from_ms)
    result["folded_audit"] = fold
    _print({"summary": result})
    return 1 if result["with_problems"] else 0


async def _replay(args: argparse.Namespace, settings: KafkaSettings) -> int:
    from streams.catalogue import Catalogue

    topic = Catalogue.from_settings(settings).events.name
    if args.session is not None:
        return await _session(args, settings, topic)
    if args.at or args.diff or args.events:
        print("error: --at, --diff and --events need --session", file=sys.stderr)
        return 2
    return await _audit(args, settings, topic)


@guarded
def run(args: argparse.Namespace) -> int:
    from agentstream.time_travel import PointError
    from streams.offsets import OffsetResetError

    try:
        return asyncio.run(_replay(args, settings_from_args(args)))
    except (PointError, OffsetResetError) as error:  # a point or a moment that does not parse
        print(f"error: {error}", file=sys.stderr)
        return 2
