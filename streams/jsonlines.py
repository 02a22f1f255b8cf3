"""Validate a JSON-lines file completely before anything is sent.

``agentstream produce`` must never leave half a file on a topic: every line is
parsed, validated against its schema (``schemas.record_from_json``, limited to
the record types the topic carries: the inbox takes exactly what
``command_from_json`` takes) and encoded first; only a file without a single
bad line is produced. Errors carry the 1-based line number so the user can fix
the file.

Validation is CPU-bound pure Python (JSON, schema check, Avro encode),
several times the cost of producing the encoded record
(``benchmarks/bench_produce.py``), so
large inputs are split into contiguous chunks validated by forked worker
processes, one per core. Chunks are joined back in file order, which keeps
each session's records in order.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Sequence
from dataclasses import dataclass

from schemas import Codec, SchemaError, record_from_json
from streams.catalogue import TopicSpec
from streams.partitioner import partition_for_key
from streams.producer import MAX_RECORD_BYTES, OutgoingRecord, type_headers

MAX_LISTED_ERRORS = 20
"""Errors listed one by one; the rest are only counted."""
PARALLEL_MIN_LINES = 20_000
"""Below this, forking workers costs more than it saves."""


@dataclass(frozen=True, slots=True)
class LineError:
    """Why one input line was rejected."""

    line: int
    """1-based line number in the input."""
    reason: str
    """What is wrong, naming the field when there is one (``input: missing required field``)."""

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass(frozen=True, slots=True)
class ValidatedLines:
    """The outcome of validating a whole input."""

    records: list[OutgoingRecord]
    """Encoded records in input order, their partitions precomputed for the
    topic's catalogue partition count; empty as soon as any line is bad."""
    errors: tuple[LineError, ...]
    """The first :data:`MAX_LISTED_ERRORS` bad lines, in line order."""
    error_count: int
    """How many lines were bad in total."""
    line_count: int
    """Non-blank lines read."""

    @property
    def ok(self) -> bool:
        """True when every line is valid (only then may the records be sent)."""
        return self.error_count == 0


_Chunk = tuple[list[tuple[bytes, bytes, str, int]], list[LineError], int, int]


def _validate_chunk(
    lines: Sequence[bytes],
    first_line: int,
    topic: TopicSpec,
    codec: Codec,
    max_errors: int,
) -> _Chunk:
    """Validate ``lines`` (numbered from ``first_line``); return (records, errors, count, seen).

    Also hashes each key to its partition for the catalogue's partition count:
    it is a third of the sending cost, and here it runs in parallel.
    """
    allowed = _allowed(topic)
    partitions = topic.partitions
    out: list[tuple[bytes, bytes, str, int]] = []
    errors: list[LineError] = []
    error_count = 0
    seen = 0
    loads = json.loads
    encode = codec.encode
    for number, raw in enumerate(lines, first_line):
        if not raw or raw.isspace():
            continue
        seen += 1
        try:
            name, record = record_from_json(loads(raw), allowed)
            value = encode(name, record)
        except json.JSONDecodeError as error:
            reason = f"invalid JSON: {error.msg} (column {error.colno})"
        except UnicodeDecodeError as error:
            reason = f"invalid UTF-8 at byte {error.start}"
        except SchemaError as error:
            reason = str(error)
        else:
            key = record["session_id"].encode("utf-8")
            size = len(key) + len(value)
            if size <= MAX_RECORD_BYTES:
                if not error_count:
                    out.append((key, value, name, partition_for_key(key, partitions)))
                continue
            reason = f"record is {size:,} bytes encoded; the limit is {MAX_RECORD_BYTES:,}"
        error_count += 1
        out = []  # nothing will be sent; stop holding records
        if len(errors) < max_errors:
            errors.append(LineError(number, reason))
    return out, errors, error_count, seen


def _allowed(topic: TopicSpec) -> tuple[str, ...]:
    if not topic.value_types:
        raise ValueError(f"{topic.name} takes no records from JSON (it carries raw records)")
    return topic.value_types


def _finish(topic: TopicSpec, chunks: Sequence[_Chunk], max_errors: int) -> ValidatedLines:
    error_count = sum(chunk[2] for chunk in chunks)
    errors = tuple(e for chunk in chunks for e in chunk[1])[:max_errors]
    records: list[OutgoingRecord] = []
    if not error_count:
        name = topic.name
        for chunk in chunks:
            records.extend(
                OutgoingRecord(name, key, value, type_headers(type_name), partition)
                for key, value, type_name, partition in chunk[0]
            )
    return ValidatedLines(records, errors, error_count, sum(chunk[3] for chunk in chunks))


def validate_lines(
    lines: Sequence[bytes],
    topic: TopicSpec,
    *,
    codec: Codec | None = None,
    max_errors: int = MAX_LISTED_ERRORS,
) -> ValidatedLines:
    """Validate and encode every line for ``topic`` in this process.

    ``lines`` are raw lines without their newline; blank lines are skipped but
    still counted for numbering. ``ValueError`` if the topic takes no JSON records.
    """
    chunk = _validate_chunk(lines, 1, topic, codec or Codec(), max_errors)
    return _finish(topic, [chunk], max_errors)


# Set in the parent just before forking; workers inherit it instead of
# receiving the input through a pipe.
_WORK: tuple[Sequence[bytes], TopicSpec, Codec, int] | None = None


def _worker(bounds: tuple[int, int]) -> _Chunk:
    assert _WORK is not None
    lines, topic, codec, max_errors = _WORK
    start, stop = bounds
    return _validate_chunk(lines[start:stop], start + 1, topic, codec, max_errors)


def usable_cpus() -> int:
    """CPUs this process may run on (affinity-aware)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def validate_lines_parallel(
    lines: Sequence[bytes],
    topic: TopicSpec,
    *,
    codec: Codec | None = None,
    max_errors: int = MAX_LISTED_ERRORS,
    workers: int | None = None,
) -> ValidatedLines:
    """:func:`validate_lines`, split over forked processes for large inputs.

    Falls back to one process for small inputs, one CPU, or platforms without
    ``fork``. Call it before starting an event loop or threads: forking a
    process that runs threads can deadlock the child.
    """
    global _WORK
    codec = codec or Codec()
    _allowed(topic)
    workers = workers or usable_cpus()
    can_fork = "fork" in multiprocessing.get_all_start_methods()
    if workers < 2 or len(lines) < PARALLEL_MIN_LINES or not can_fork:
        return validate_lines(lines, topic, codec=codec, max_errors=max_errors)
    # The parent validates the first chunk itself while the workers do the
    # rest; it gets a smaller share because it also unpickles their results.
    share = len(lines) / (workers - 0.2)
    first = int(share * 0.8)
    size = -(-(len(lines) - first) // (workers - 1))
    bounds = [(start, min(start + size, len(lines))) for start in range(first, len(lines), size)]
    _WORK = (lines, topic, codec, max_errors)
    try:
        with multiprocessing.get_context("fork").Pool(len(bounds)) as pool:
            pending = pool.map_async(_worker, bounds, chunksize=1)
            own = _validate_chunk(lines[:first], 1, topic, codec, max_errors)
            chunks = [own, *pending.get()]
    finally:
        _WORK = None
    return _finish(topic, chunks, max_errors)


def split_lines(data: bytes) -> list[bytes]:
    """Lines of ``data`` without their ``\\n`` / ``\\r\\n``; numbering matches an editor's."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]
