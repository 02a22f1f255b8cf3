"""``agentstream offsets reset``: plan a reset the way kafka-consumer-groups does, then
apply it where each component really keeps its position.

What a reset means, per component:

* **llm / tools** (executors; position = group offsets): moving back re-runs the work
  items from there: the model and tool calls are made again and the engine drops the
  duplicate results by ``call_id`` (a tool's side effects do happen again). Moving
  forward skips work items: their sessions wait for results that never come, so it
  needs ``--force-skip``.
* **projector** (position = ``projection_tracking`` in Postgres): moving back removes
  from the read models what the partition applied from the new position on, in the
  same transaction that moves the position (projections/rewind.py); the projector
  re-projects from there. Moving forward leaves the events passed over out of the
  read models: ``--force-skip``.
* **engine** (position = progress records on ``engine-progress``): moving back is
  refused (processors/engine/inbox_reset.py says why); moving forward skips inbox
  commands, which are then never applied: ``--force-skip``, and the plan lists them.

Group offsets follow every reset (with agentstream's commit metadata), so lag tools
and Kafka's own ``--describe`` agree with the position the component really uses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition

from agentstream.offset_positions import Component, PartitionPosition, components, read_positions
from streams.clients import new_consumer
from streams.offsets import (
    RESET_METADATA,
    Bounds,
    Member,
    OffsetResetError,
    RangeSummary,
    ResetSpec,
    commit_offsets,
    describe_group,
    plan_targets,
    summarise_range,
)
from streams.settings import KafkaSettings


@dataclass
class PlanRow:
    """One partition of a reset plan."""

    group: str
    topic: str
    partition: int
    current: int
    """Where the component resumes now."""
    new: int
    note: str = ""

    @property
    def move(self) -> int:
        return self.new - self.current

    def to_json(self) -> dict[str, Any]:
        return {
            "group": self.group, "topic": self.topic, "partition": self.partition,
            "current_offset": self.current, "new_offset": self.new, "note": self.note,
        }  # fmt: skip


@dataclass
class Plan:
    """A reset of one component, and whether (and why not) it may be executed."""

    component: Component
    spec: ResetSpec
    rows: list[PlanRow]
    refusals: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: list[RangeSummary] = field(default_factory=list)

    @property
    def changes(self) -> list[PlanRow]:
        return [row for row in self.rows if row.move]

    def to_json(self) -> dict[str, Any]:
        return {
            "component": self.component.name,
            "group": self.component.group,
            "kept_in": self.component.kept_in,
            "reset": str(self.spec),
            "plan": [row.to_json() for row in self.rows],
            "refused": self.refusals,
            "notes": self.notes,
            "skipped": [
                {"partition": s.partition, "first": s.first, "end": s.end,
                 "records": s.records, "types": s.types, "keys": len(s.keys),
                 "complete": s.complete, "sample": s.sample}
                for s in self.skipped
            ],
        }  # fmt: skip


async def make_plan(
    settings: KafkaSettings,
    database_url: str,
    name: str,
    partitions: Sequence[int],
    spec: ResetSpec,
    *,
    force_skip: bool = False,
) -> Plan:
    """The plan for resetting component ``name`` (on ``partitions``, default all)."""
    component = components(settings)[name]
    positions = await read_positions(settings, database_url, [name])
    by_partition = {row.partition: row for row in positions}
    unknown = sorted(set(partitions) - set(by_partition))
    if unknown:
        raise OffsetResetError(
            f"{component.topic} has no partition {unknown[0]} (it has {len(by_partition)})"
        )
    chosen = [by_partition[p] for p in sorted(set(partitions))] if partitions else positions
    consumer = new_consumer(settings)
    await consumer.start()
    # aiokafka's stop() raises if the consumer's background task never ran: let it start.
    await asyncio.sleep(0)
    try:
        tps = {TopicPartition(row.topic, row.partition): row for row in chosen}
        bounds = {tp: Bounds(row.start, row.end) for tp, row in tps.items()}
        current = {tp: row.effective for tp, row in tps.items()}
        targets = await plan_targets(consumer, bounds, spec, dict(current))
        plan = Plan(component, spec, [])
        for tp, row in tps.items():
            target = targets[tp]
            plan.rows.append(
                PlanRow(component.group, tp.topic, tp.partition, row.effective, target.offset,
                        target.note)
            )  # fmt: skip
        consumer.assign(list(tps))
        for change in plan.changes:
            if change.move > 0:
                tp = TopicPartition(change.topic, change.partition)
                plan.skipped.append(await summarise_range(consumer, tp, change.current, change.new))
    finally:
        await consumer.stop()
    _judge(plan, positions, force_skip)
    return plan


def _judge(plan: Plan, positions: list[PartitionPosition], force_skip: bool) -> None:
    """Fill in the plan's refusals and notes (what the moves mean for this component)."""
    name = plan.component.name
    back = [row for row in plan.changes if row.move < 0]
    forward = [s for s in plan.skipped if s.records]
    if name == "engine" and back:
        from processors.engine.inbox_reset import rewind_refusal

        plan.refusals.append(
            rewind_refusal({row.partition: (row.current, row.new) for row in back})
        )
    if forward and not force_skip:
        what = {
            "engine": "inbox commands are never applied",
            "projector": "events never reach the read models",
        }.get(name, "work items are never run and their sessions wait for results")
        total = sum(s.records for s in forward)
        plan.refusals.append(
            f"refused: moving forward skips {total} record(s) ({what}); "
            "they are listed with the plan; add --force-skip to skip them"
        )  # fmt: skip
    for row in back:
        if name in ("llm", "tools"):
            plan.notes.append(
                f"partition {row.partition}: the {-row.move} work item offset(s) from {row.new}"
                " run again: their calls are made again, and the engine drops the duplicate"
                " results by call_id (a tool's side effects happen again)"
            )
        elif name == "projector":
            plan.notes.append(
                f"partition {row.partition}: what was applied from offset {row.new} on is"
                " removed from the read models with the move (one Postgres transaction),"
                " then projected again"
            )
    if any(row.foreign for row in positions):
        plan.notes.append(
            "the group's committed offsets were set by another tool and are not where the"
            f" {name} resumes; the plan starts from where it really resumes"
        )


async def live_members(settings: KafkaSettings, group: str) -> list[Member]:
    return (await describe_group(settings, group)).members


def _refuse_members(group: str, members: list[Member]) -> None:
    if members:
        names = "; ".join(str(m) for m in members)
        raise OffsetResetError(
            f"refused: group {group} has {len(members)} live member(s): {names}. Stop them"
            " (a stopped member leaves the group within its session timeout) and run again"
        )


async def execute(settings: KafkaSettings, database_url: str, plan: Plan) -> list[Any]:
    """Apply ``plan``; refuses (OffsetResetError) while the plan is refused or the group has
    a live member. Returns what moving the projector did (projections.rewind.Moved)."""
    if plan.refusals:
        raise OffsetResetError(plan.refusals[0])
    component = plan.component
    _refuse_members(component.group, await live_members(settings, component.group))
    offsets = {TopicPartition(r.topic, r.partition): r.new for r in plan.rows}
    moved: list[Any] = []
    if component.name == "engine":
        from processors.engine.inbox_reset import write_progress
        from streams.catalogue import Catalogue

        changed = {r.partition: r.new for r in plan.changes}
        await write_progress(settings, Catalogue.from_settings(settings), changed)
    elif component.name == "projector":
        moved = await _move_projector(settings, database_url, plan)
    await commit_offsets(settings, component.group, offsets, RESET_METADATA)
    return moved


async def _move_projector(settings: KafkaSettings, database_url: str, plan: Plan) -> list[Any]:
    import asyncpg

    from projections.db import libpq_url
    from projections.migrate import upgrade
    from projections.rewind import move_position

    await upgrade(database_url)
    connection = await asyncpg.connect(libpq_url(database_url))
    try:
        async with connection.transaction():
            moved = [
                await move_position(connection, plan.component.topic, row.partition, row.new)
                for row in plan.rows
            ]
            # A projector that joined since the first check would seek to the old
            # positions: look again while the tracking rows are still locked.
            _refuse_members(
                plan.component.group, await live_members(settings, plan.component.group)
            )
        return moved
    finally:
        await connection.close()
