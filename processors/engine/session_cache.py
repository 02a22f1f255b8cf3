"""The live sessions of one partition, bounded, with snapshot bookkeeping.

An LRU of session states. A state that changed since its last durable snapshot
is *dirty* and records the events-topic offset of its newest event; a dirty
session is never evicted (it would be lost from memory before it is in
Postgres), so eviction only takes clean sessions and the flusher is asked to
run when too many are dirty.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from processors.core import SessionState


@dataclass(slots=True)
class CachedSession:
    """A live session."""

    state: SessionState
    """The current state (immutable; replaced on every change)."""
    events_offset: int
    """Events-topic offset of the newest event folded into ``state``; -1 if unknown."""
    dirty: bool
    """True when ``state`` is newer than the session's durable snapshot."""


class SessionCache:
    """LRU of live sessions of one partition."""

    def __init__(self, max_sessions: int) -> None:
        self.max_sessions = max_sessions
        self._entries: OrderedDict[str, CachedSession] = OrderedDict()
        self._dirty: set[str] = set()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._entries

    @property
    def dirty_count(self) -> int:
        return len(self._dirty)

    def get(self, session_id: str) -> SessionState | None:
        """The live state, marking it recently used; None when not in memory."""
        entry = self._entries.get(session_id)
        if entry is None:
            return None
        self._entries.move_to_end(session_id)
        return entry.state

    def put_clean(self, state: SessionState, events_offset: int) -> None:
        """A state loaded from its durable snapshot."""
        self._entries[state.session_id] = CachedSession(state, events_offset, False)
        self._entries.move_to_end(state.session_id)

    def put_dirty(self, state: SessionState, events_offset: int) -> None:
        """A state that changed: newest event at ``events_offset`` (committed)."""
        entry = self._entries.get(state.session_id)
        if entry is None:
            self._entries[state.session_id] = CachedSession(state, events_offset, True)
        else:
            entry.state, entry.events_offset, entry.dirty = state, events_offset, True
            self._entries.move_to_end(state.session_id)
        self._dirty.add(state.session_id)

    def dirty_entries(self) -> list[CachedSession]:
        """Every dirty session (the states are immutable, so this is a consistent cut)."""
        return [self._entries[session_id] for session_id in self._dirty]

    def mark_clean(self, flushed: list[CachedSession], seqs: list[int]) -> None:
        """Sessions whose snapshot at ``seq`` is durable; newer changes stay dirty."""
        for entry, seq in zip(flushed, seqs, strict=True):
            if entry.dirty and entry.state.seq == seq:
                entry.dirty = False
                self._dirty.discard(entry.state.session_id)

    def evict(self) -> int:
        """Drop least recently used clean sessions down to the limit; how many went."""
        evicted = 0
        if len(self._entries) <= self.max_sessions:
            return 0
        for session_id in list(self._entries):
            if len(self._entries) <= self.max_sessions:
                break
            if not self._entries[session_id].dirty:
                del self._entries[session_id]
                evicted += 1
        return evicted

    def clear(self) -> None:
        self._entries.clear()
        self._dirty.clear()
