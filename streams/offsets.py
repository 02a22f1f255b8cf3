"""Consumer-group offsets the way ``kafka-consumer-groups --reset-offsets`` handles them.

The Kafka half of ``agentstream offsets``: where a partition starts and ends, the
new offset each reset kind asks for, a group's members and committed offsets, and
committing offsets for a group none of whose members runs. What a position *means*
for each component (and where it is really kept) is decided above this layer.

The reset kinds follow Kafka's ``ConsumerGroupCommand``:

* ``--to-earliest`` / ``--to-latest``: the log start / the end;
* ``--to-offset N`` and ``--shift-by N`` (from the current position): clamped to
  [earliest, latest];
* ``--to-datetime T`` / ``--by-duration D`` (T = now - D): the first offset whose
  timestamp is at or after T (ListOffsets by timestamp), or the end when there is none.

One difference: "latest" is the last stable offset (read_committed). Kafka's tool
takes the high watermark, which on a topic written in transactions may lie inside
an open transaction that a read_committed consumer cannot pass yet.

Every offset agentstream commits carries commit metadata starting with
``agentstream``; Kafka's own tool commits none. That is how a component tells, at
start, a reset made with Kafka's tool from its own mirror of its position.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from streams.clients import new_admin, new_consumer
from streams.errors import StreamsError
from streams.settings import KafkaSettings

log = logging.getLogger(__name__)

METADATA_PREFIX = "agentstream"
MIRROR_METADATA = "agentstream:mirror"
"""Commit metadata of a component mirroring a position it keeps elsewhere."""
RESET_METADATA = "agentstream:reset"
"""Commit metadata of ``agentstream offsets reset --execute``."""

ResetKind = Literal["earliest", "latest", "offset", "shift", "datetime", "duration"]


class OffsetResetError(StreamsError):
    """A reset that cannot be planned or is refused (the message says why)."""


@dataclass(frozen=True, slots=True)
class ResetSpec:
    """One reset kind and its argument (offset, shift, or timestamp in ms)."""

    kind: ResetKind
    value: int = 0

    def __str__(self) -> str:
        if self.kind in ("earliest", "latest"):
            return f"--to-{self.kind}"
        if self.kind == "offset":
            return f"--to-offset {self.value}"
        if self.kind == "shift":
            return f"--shift-by {self.value}"
        stamp = dt.datetime.fromtimestamp(self.value / 1000, dt.UTC).isoformat()
        return f"--to-datetime {stamp}"


@dataclass(frozen=True, slots=True)
class Bounds:
    """A partition's first retained offset and its read_committed end."""

    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Target:
    """Where a reset puts one partition, and why when it is not what was asked."""

    offset: int
    note: str = ""


@dataclass(frozen=True, slots=True)
class Member:
    """A live member of a consumer group."""

    member_id: str
    client_id: str
    host: str

    def __str__(self) -> str:
        return f"{self.member_id} (client {self.client_id} on {self.host})"


@dataclass(frozen=True, slots=True)
class GroupState:
    state: str
    members: list[Member] = field(default_factory=list)


_DURATION = re.compile(
    r"^(?P<sign>[-+]?)P(?:(?P<d>[-+]?\d+)D)?"
    r"(?:T(?:(?P<h>[-+]?\d+)H)?(?:(?P<m>[-+]?\d+)M)?(?:(?P<s>[-+]?\d+)(?:[.,](?P<f>\d{0,9}))?S)?)?$",
    re.IGNORECASE,
)


def parse_duration(text: str) -> dt.timedelta:
    """An ISO-8601 duration as Java's ``Duration.parse`` reads it (``PnDTnHnMn.nS``)."""
    match = _DURATION.match(text.strip())
    if match is None or text.strip().upper().endswith("T") or text.strip().upper() in ("P", "-P"):
        raise OffsetResetError(f"not a duration (PnDTnHnMnS, e.g. PT15M or P1DT2H): {text!r}")
    parts = {k: int(v) if v else 0 for k, v in match.groupdict().items() if k not in ("sign", "f")}
    fraction = match["f"] or ""
    micros = int((fraction + "000000")[:6]) if fraction else 0
    if match["s"] and match["s"].startswith("-"):
        micros = -micros
    delta = dt.timedelta(
        days=parts["d"], hours=parts["h"], minutes=parts["m"], seconds=parts["s"],
        microseconds=micros,
    )  # fmt: skip
    return -delta if match["sign"] == "-" else delta


def parse_datetime_ms(text: str) -> int:
    """Epoch ms of an ISO-8601 date-time; without a zone it is local time (as Kafka's tool)."""
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError as error:
        raise OffsetResetError(
            f"not an ISO-8601 date-time (e.g. 2025-01-31T12:00:00.000 or ...+01:00): {text!r}"
        ) from error
    return round(moment.astimezone().timestamp() * 1000)


async def partition_bounds(
    consumer: AIOKafkaConsumer, tps: Iterable[TopicPartition]
) -> dict[TopicPartition, Bounds]:
    """Log start and read_committed end of each partition (``consumer``: started)."""
    wanted = list(tps)
    if not wanted:
        return {}
    starts = await consumer.beginning_offsets(wanted)
    ends = await consumer.end_offsets(wanted)
    return {tp: Bounds(int(starts[tp]), int(ends[tp])) for tp in wanted}


async def plan_targets(
    consumer: AIOKafkaConsumer,
    bounds: Mapping[TopicPartition, Bounds],
    spec: ResetSpec,
    current: Mapping[TopicPartition, int | None],
) -> dict[TopicPartition, Target]:
    """The new offset of every partition in ``bounds`` under ``spec``, Kafka's way.

    ``current`` is where each partition stands now (None: no position yet); only
    ``--shift-by`` needs it, and refuses a partition without one as Kafka does.
    """
    targets: dict[TopicPartition, Target] = {}
    times: dict[TopicPartition, int] = {}
    for tp, b in bounds.items():
        if spec.kind == "earliest":
            targets[tp] = Target(b.start)
        elif spec.kind == "latest":
            targets[tp] = Target(b.end)
        elif spec.kind in ("offset", "shift"):
            if spec.kind == "offset":
                wanted = spec.value
            else:
                now = current.get(tp)
                if now is None:
                    raise OffsetResetError(
                        f"cannot shift {tp.topic}[{tp.partition}]: it has no current position"
                    )
                wanted = now + spec.value
            targets[tp] = _clamped(wanted, b)
        else:
            times[tp] = spec.value
    if times:
        found = await consumer.offsets_for_times(times)
        for tp in times:
            hit = found.get(tp)
            if hit is None:
                note = "no record at or after that time: latest"
                targets[tp] = Target(bounds[tp].end, note)
            else:
                targets[tp] = _clamped(int(hit.offset), bounds[tp])
    return targets


def _clamped(wanted: int, b: Bounds) -> Target:
    if wanted > b.end:
        return Target(b.end, f"{wanted} is past the end: latest")
    if wanted < b.start:
        return Target(b.start, f"{wanted} is before the log start: earliest")
    return Target(wanted)


def duration_spec(text: str, now: dt.datetime | None = None) -> ResetSpec:
    """``--by-duration D``: the time ``now - D`` as a datetime reset."""
    moment = (now or dt.datetime.now(dt.UTC)) - parse_duration(text)
    return ResetSpec("duration", round(moment.timestamp() * 1000))


async def describe_group(settings: KafkaSettings, group: str) -> GroupState:
    """The group's state and live members (DescribeGroups)."""
    admin = new_admin(settings)
    try:
        await admin.start()
        responses = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    for response in responses:
        # (error, group, state, protocol type, protocol, members[, authorized operations]);
        # a member is (member id, client id, host, metadata, assignment).
        for described in getattr(response, "groups", None) or []:
            if described[1] != group:
                continue
            members = [Member(str(m[0]), str(m[1]), str(m[2])) for m in described[5]]
            return GroupState(str(described[2]), members)
    return GroupState("Dead")


async def group_offsets(
    settings: KafkaSettings, group: str, tps: Iterable[TopicPartition] | None = None
) -> dict[TopicPartition, OffsetAndMetadata]:
    """The group's committed offsets (with their metadata); partitions without one are left out."""
    admin = new_admin(settings)
    try:
        await admin.start()
        wanted = list(tps) if tps is not None else None
        found = await admin.list_consumer_group_offsets(group, partitions=wanted or None)
    finally:
        await admin.close()
    return {tp: om for tp, om in found.items() if om.offset >= 0}


async def commit_offsets(
    settings: KafkaSettings, group: str, offsets: Mapping[TopicPartition, int], metadata: str
) -> None:
    """Commit ``offsets`` for ``group`` from outside it (the group must have no live member:
    the coordinator refuses a commit from a non-member of an active group)."""
    if not offsets:
        return
    consumer = new_consumer(settings, group_id=group)
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit({tp: (o, metadata) for tp, o in offsets.items()})
    finally:
        await consumer.stop()


def written_by_us(metadata: str | None) -> bool:
    return bool(metadata) and str(metadata).startswith(METADATA_PREFIX)


async def foreign_offsets(
    settings: KafkaSettings, group: str, positions: Mapping[TopicPartition, int]
) -> dict[TopicPartition, int]:
    """Committed offsets of ``group`` that differ from ``positions`` (where the component
    really resumes) and that agentstream did not write: a reset with Kafka's own tool."""
    committed = await group_offsets(settings, group, positions)
    return {
        tp: om.offset
        for tp, om in committed.items()
        if tp in positions and om.offset != positions[tp] and not written_by_us(om.metadata)
    }


async def warn_foreign_offsets(
    settings: KafkaSettings,
    group: str,
    positions: Mapping[TopicPartition, int],
    *,
    component: str,
    kept_in: str,
    timeout_s: float = 5.0,
) -> dict[TopicPartition, int]:
    """Log a warning per partition whose group offset was set outside agentstream (e.g.
    ``kafka-consumer-groups --reset-offsets``) and is not where ``component`` resumes.

    Called when partitions are assigned, where a failure must not stop the component:
    any error (or no answer within ``timeout_s``) is logged and an empty result returned.
    """
    try:
        found = await asyncio.wait_for(foreign_offsets(settings, group, positions), timeout_s)
    except Exception as error:
        log.warning("%s: could not compare group %s's offsets: %r", component, group, error)
        return {}
    for tp, offset in sorted(found.items()):
        log.warning(
            "%s: group %s has offset %d committed on %s[%d] by another tool (e.g. "
            "kafka-consumer-groups --reset-offsets), but the %s is at %d, kept in %s: "
            "that reset is NOT applied. To move it: agentstream offsets reset --component %s "
            "--partition %d --to-offset %d --execute",
            component, group, offset, tp.topic, tp.partition, component, positions[tp],
            kept_in, component, tp.partition, offset,
        )  # fmt: skip
    return found


async def holds_records(
    consumer: AIOKafkaConsumer, tp: TopicPartition, start: int, end: int, timeout_s: float = 5.0
) -> bool:
    """Whether [start, end) holds a record a read_committed consumer sees (and not only
    transaction markers or aborted records). ``consumer`` must have ``tp`` assigned."""
    if start >= end:
        return False
    consumer.seek(tp, start)
    waited = 0.0
    while await consumer.position(tp) < end and waited < timeout_s:
        records = (await consumer.getmany(tp, timeout_ms=200, max_records=1)).get(tp, [])
        if any(r.offset < end for r in records):
            return True
        if not records:
            waited += 0.2
    return False


async def list_groups(settings: KafkaSettings, prefix: str) -> list[str]:
    """Consumer groups whose id starts with ``prefix``, sorted."""
    admin = new_admin(settings)
    try:
        await admin.start()
        groups = await admin.list_consumer_groups()
    finally:
        await admin.close()
    return sorted({str(g[0]) for g in groups if str(g[0]).startswith(prefix)})


@dataclass
class RangeSummary:
    """The records of [first, end) of one partition: what a forward move passes over."""

    partition: int
    first: int
    end: int
    records: int = 0
    types: dict[str, int] = field(default_factory=dict)
    """Records by their ``type`` header."""
    keys: set[bytes] = field(default_factory=set)
    sample: list[tuple[int, str, str]] = field(default_factory=list)
    """The first few (offset, type, key)."""
    complete: bool = True
    """False when the range held more records than were read."""

    def describe(self) -> str:
        kinds = ", ".join(f"{n} {t}" for t, n in sorted(self.types.items(), key=lambda i: -i[1]))
        more = "" if self.complete else " at least"
        return (
            f"partition {self.partition}: offsets {self.first}..{self.end - 1}:{more} "
            f"{self.records} record(s) of {len(self.keys)} key(s) ({kinds or 'none'})"
        )


async def summarise_range(
    consumer: AIOKafkaConsumer,
    tp: TopicPartition,
    first: int,
    end: int,
    *,
    limit: int = 100_000,
    sample: int = 10,
) -> RangeSummary:
    """Count the records of [first, end) by type and key, reading at most ``limit``
    (``consumer``: started, ``tp`` assigned)."""
    summary = RangeSummary(tp.partition, first, end)
    if first >= end:
        return summary
    consumer.seek(tp, first)
    idle = 0
    while await consumer.position(tp) < end:
        records = (await consumer.getmany(tp, timeout_ms=500)).get(tp, [])
        idle = 0 if records else idle + 1
        if idle > 20:
            break
        for record in records:
            if record.offset >= end:
                break
            headers = dict(record.headers or ())
            kind = (headers.get("type") or b"?").decode(errors="replace")
            key = record.key or b""
            summary.records += 1
            summary.types[kind] = summary.types.get(kind, 0) + 1
            summary.keys.add(key)
            if len(summary.sample) < sample:
                summary.sample.append((record.offset, kind, key.decode(errors="replace")))
            if summary.records >= limit:
                summary.complete = False
                return summary
    return summary
