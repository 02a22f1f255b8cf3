"""``agentstream offsets``: where each component stands; resets like kafka-consumer-groups.

``show`` prints, per component (engine, llm and tools executors, projector, and any
other consumer group under the prefix) and partition: the position it resumes from,
the read_committed end, the lag, and where the position is kept (group offsets, the
``engine-progress`` topic, Postgres), with the group's committed offset beside it.

``reset --component C`` takes kafka-consumer-groups' reset flags and prints the same
plan table (GROUP TOPIC PARTITION NEW-OFFSET); a dry run is the default, ``--execute``
applies it where the component keeps its position, and refuses while the component's
group has live members. What a reset means per component: docs/replay.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from agentstream.commands.topics import add_kafka_arguments, guarded, settings_from_args

_KINDS = ("to_earliest", "to_latest", "to_offset", "shift_by", "to_datetime", "by_duration")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "offsets",
        help="show and reset the components' positions (kafka-consumer-groups semantics)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    from agentstream.offset_positions import COMPONENT_NAMES

    show = actions.add_parser("show", help="positions, ends and lag of every component")
    show.add_argument("--component", action="append", choices=COMPONENT_NAMES, default=[])
    show.add_argument("--json", action="store_true", help="one JSON document")
    show.add_argument("--database-url", help="Postgres (AGENTSTREAM_DATABASE_URL)")
    add_kafka_arguments(show)
    show.set_defaults(func=run_show)

    reset = actions.add_parser("reset", help="move a component's position (dry run by default)")
    reset.add_argument("--component", required=True, choices=COMPONENT_NAMES)
    reset.add_argument(
        "--partition", type=int, action="append", default=[],
        help="this partition only (repeatable; default: all)",
    )  # fmt: skip
    kind = reset.add_mutually_exclusive_group(required=True)
    kind.add_argument("--to-earliest", action="store_true", help="the log start")
    kind.add_argument("--to-latest", action="store_true", help="the read_committed end")
    kind.add_argument("--to-offset", type=int, metavar="N", help="offset N (clamped)")
    kind.add_argument("--shift-by", type=int, metavar="N", help="current + N (clamped)")
    kind.add_argument("--to-datetime", metavar="ISO-8601", help="first record at or after it")
    kind.add_argument("--by-duration", metavar="PnDTnHnMnS", help="first record since now - D")
    mode = reset.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="print the plan only (default)")
    mode.add_argument("--execute", action="store_true", help="apply the plan")
    reset.add_argument(
        "--force-skip", action="store_true",
        help="allow a forward move that skips unprocessed records (they are listed)",
    )  # fmt: skip
    reset.add_argument("--json", action="store_true", help="the plan as one JSON document")
    reset.add_argument("--database-url", help="Postgres (AGENTSTREAM_DATABASE_URL)")
    add_kafka_arguments(reset)
    reset.set_defaults(func=run_reset)


def _database_url(args: argparse.Namespace) -> str:
    from projections.settings import ProjectionSettings

    return str(args.database_url or ProjectionSettings.from_env().database_url)


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = [header, *rows]
    return "\n".join(
        " ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


@guarded
def run_show(args: argparse.Namespace) -> int:
    from agentstream.offset_positions import COMPONENT_NAMES, read_positions

    settings = settings_from_args(args)
    names = args.component or list(COMPONENT_NAMES)
    rows = asyncio.run(
        read_positions(settings, _database_url(args), names, other_groups=not args.component)
    )
    if args.json:
        print(json.dumps({"partitions": [row.to_json() for row in rows]}, indent=1))
        return 0
    header = ["COMPONENT", "GROUP", "TOPIC", "PARTITION", "POSITION", "END", "LAG",
              "KEPT-IN", "GROUP-OFFSET"]  # fmt: skip
    cells = [
        [row.component, row.group, row.topic, str(row.partition),
         "-" if row.position is None else str(row.position), str(row.end), str(row.lag),
         row.kept_in, "-" if row.group_offset is None else str(row.group_offset)]
        for row in rows
    ]  # fmt: skip
    print(_table(header, cells) if cells else "no partitions")
    for row in rows:
        if row.foreign:
            print(
                f"note: {row.group} {row.topic}[{row.partition}]: the group offset"
                f" {row.group_offset} was set by another tool; the {row.component} resumes"
                f" from {row.effective} ({row.kept_in}). To move it: agentstream offsets reset"
                f" --component {row.component} --partition {row.partition}"
                f" --to-offset {row.group_offset} --execute"
            )
    return 0


def _spec(args: argparse.Namespace) -> Any:
    from streams.offsets import ResetSpec, duration_spec, parse_datetime_ms

    if args.to_earliest:
        return ResetSpec("earliest")
    if args.to_latest:
        return ResetSpec("latest")
    if args.to_offset is not None:
        return ResetSpec("offset", args.to_offset)
    if args.shift_by is not None:
        return ResetSpec("shift", args.shift_by)
    if args.to_datetime is not None:
        return ResetSpec("datetime", parse_datetime_ms(args.to_datetime))
    return duration_spec(args.by_duration)


def _print_plan(plan: Any) -> None:
    # kafka-consumer-groups' plan columns first, so what parses its output parses ours.
    header = ["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET", "CURRENT-OFFSET", "NOTE"]
    cells = [
        [r.group, r.topic, str(r.partition), str(r.new), str(r.current), r.note] for r in plan.rows
    ]
    print()
    print(_table(header, cells))
    for note in plan.notes:
        print(f"note: {note}")
    for skipped in plan.skipped:
        if skipped.records:
            print(f"skips {skipped.describe()}")
            for offset, kind, key in skipped.sample:
                print(f"  offset {offset}: {kind} {key}")


@guarded
def run_reset(args: argparse.Namespace) -> int:
    from agentstream.offset_reset import execute, make_plan

    settings = settings_from_args(args)
    database_url = _database_url(args)
    spec = _spec(args)

    async def go() -> int:
        plan = await make_plan(
            settings, database_url, args.component, args.partition, spec,
            force_skip=args.force_skip,
        )  # fmt: skip
        if args.json:
            print(json.dumps(plan.to_json(), indent=1))
        else:
            _print_plan(plan)
        for refusal in plan.refusals:
            print(f"error: {refusal}", file=sys.stderr)
        if plan.refusals:
            return 1
        if not args.execute:
            print("dry run: nothing changed (add --execute to apply)", file=sys.stderr)
            return 0
        moved = await execute(settings, database_url, plan)
        for m in moved:
            print(
                f"projector partition {m.partition}: last applied {m.before} -> {m.after};"
                f" {m.events_removed} event(s) removed, {m.sessions_rebuilt} session(s)"
                f" rebuilt, {m.sessions_removed} removed",
                file=sys.stderr,
            )
        print(f"done: {len(plan.changes)} partition(s) of {plan.component.name} moved",
              file=sys.stderr)  # fmt: skip
        return 0

    return asyncio.run(go())
